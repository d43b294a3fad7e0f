"""The Stripe webhook endpoint: a thin shell around billing.services.webhooks."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.services.webhooks import webhook_receive

MAX_BODY_BYTES = 1024 * 1024  # Stripe events are far smaller; refuse to store junk floods


# CSRF does not apply: Stripe cannot hold our cookie, and authenticity comes from the
# signature, verified against our own secret before anything is acted on.
@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_BODY_BYTES:
        return JsonResponse({"received": False, "message": "Payload too large."}, status=413)
    answer = webhook_receive(
        raw_body=request.body, signature=request.headers.get("Stripe-Signature")
    )
    return JsonResponse(
        {"received": 200 <= answer.status < 300, "message": answer.message}, status=answer.status
    )
