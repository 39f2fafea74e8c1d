"""DRF endpoints partners call. Authentication is the HMAC signature alone (see fulfillment.webhooks)."""

from rest_framework.response import Response
from rest_framework.views import APIView

from .sandbox import sandbox_receive_order
from .webhooks import partner_event_receive


class PartnerEventsApi(APIView):
    """``POST /api/partners/<slug>/events``: one signed status event for one line."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []  # the signature covers the raw bytes; the service parses them

    def post(self, request, slug: str):
        result = partner_event_receive(slug=slug, headers=request.headers, body=request.body)
        return Response(result.data, status=result.status_code)


class SandboxPartnerOrdersApi(APIView):
    """``POST /sandbox/partners/<slug>/orders``: the built-in sandbox pharmacy's order API (demo)."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []

    def post(self, request, slug: str):
        status_code, data = sandbox_receive_order(slug=slug, headers=request.headers, body=request.body)
        return Response(data, status=status_code)
