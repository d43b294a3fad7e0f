"""Web pages for organizations, team, invitations and API keys."""

urlpatterns: list = []
