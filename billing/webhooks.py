"""The Stripe webhook endpoint: a thin shell around billing.services.webhooks."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.limits import limit_hit, limit_refund
from accounts.services.audit import client_ip
from billing.services.webhooks import webhook_receive

MAX_BODY_BYTES = 1024 * 1024  # Stripe events are far smaller; refuse to store junk floods
WINDOW_SECONDS = 60


# CSRF does not apply: Stripe cannot hold our cookie, and authenticity comes from the
# signature, verified against our own secret before anything is stored or acted on.
@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    # Each address may send BILLING_WEBHOOK_REFUSED_PER_MINUTE deliveries we do not accept
    # (bad signature, junk, replays): a slot is reserved before any work and given back
    # when the delivery proves genuine, so Stripe's own traffic is never limited.
    bucket = f"stripe-webhook:{client_ip(request) or 'unknown'}"
    reserved = limit_hit(
        bucket=bucket,
        limit=settings.BILLING_WEBHOOK_REFUSED_PER_MINUTE,
        window_seconds=WINDOW_SECONDS,
    )
    if not reserved.allowed:
        response = JsonResponse({"received": False, "message": "Too many requests."}, status=429)
        response["Retry-After"] = str(reserved.reset_seconds)
        return response
    if len(request.body) > MAX_BODY_BYTES:
        return JsonResponse({"received": False, "message": "Payload too large."}, status=413)
    answer = webhook_receive(
        raw_body=request.body,
        signature=request.headers.get("Stripe-Signature"),
        ip_address=client_ip(request),
    )
    if answer.genuine:
        limit_refund(bucket=bucket, window_seconds=WINDOW_SECONDS)
    return JsonResponse(
        {"received": 200 <= answer.status < 300, "message": answer.message}, status=answer.status
    )
