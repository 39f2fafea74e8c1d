"""DRF endpoints partners call. Authentication is the webhook signature alone (see fulfillment.webhooks)."""

from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from fizy.lib.http import BodyTooLarge, client_address, read_body_at_most

from .models import RefusedWebhookRequest
from .sandbox import sandbox_answer_hold, sandbox_cancel_line, sandbox_lookup_order, sandbox_order_status, sandbox_receive_order
from .webhooks import max_body_bytes, partner_event_receive, partner_event_refuse


class PartnerEventsApi(APIView):
    """``POST /api/partners/<slug>/events``: one signed status event for one line."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []  # the signature covers the raw bytes; the service parses them

    def post(self, request, slug: str):
        source = client_address(request)
        try:
            # The underlying Django request: read with a bound, never request.body (read whole).
            body = read_body_at_most(request._request, max_body_bytes())
        except BodyTooLarge as too_large:
            result = partner_event_refuse(slug=slug, check=RefusedWebhookRequest.Check.TOO_LARGE,
                                          detail="body over the size limit", size=too_large.size, source_address=source)
        else:
            result = partner_event_receive(slug=slug, headers=request.headers, body=body, source_address=source)
        return Response(result.data, status=result.status_code)


class SandboxPartnerOrdersApi(APIView):
    """``POST /sandbox/partners/<slug>/orders``: the built-in sandbox pharmacy's order API (demo)."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []

    def post(self, request, slug: str):
        status_code, data = sandbox_receive_order(slug=slug, headers=request.headers, body=request.body)
        return Response(data, status=status_code)

    def get(self, request, slug: str):
        """The order lookup: ``GET …/orders?idempotency_key=…``."""
        key = request.query_params.get("idempotency_key", "")
        status_code, data = sandbox_lookup_order(slug=slug, headers=request.headers, idempotency_key=key)
        return Response(data, status=status_code)


class SandboxPartnerCancelLineApi(APIView):
    """``POST /sandbox/partners/<slug>/orders/<reference>/lines/<line_id>/cancel`` (demo)."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []

    def post(self, request, slug: str, reference: str, line_id: int):
        status_code, data = sandbox_cancel_line(slug=slug, reference=reference, line_id=line_id, headers=request.headers)
        return Response(data, status=status_code)


class SandboxPartnerHoldAnswerApi(APIView):
    """``POST /sandbox/partners/<slug>/orders/<reference>/lines/<line_id>/responses`` (demo):
    the clinic answers a hold, as multipart/form-data (``text``, ``file``)."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [MultiPartParser]

    def post(self, request, slug: str, reference: str, line_id: int):
        def read_answer():
            try:
                return request.data.get("text", ""), request.FILES.get("file")
            except (ParseError, UnsupportedMediaType) as exc:
                raise ValueError(str(exc)) from None

        status_code, data = sandbox_answer_hold(slug=slug, reference=reference, line_id=line_id, headers=request.headers,
                                                read_answer=read_answer)
        return Response(data, status=status_code)


class SandboxPartnerOrderStatusApi(APIView):
    """``GET /sandbox/partners/<slug>/orders/<reference>``: the sandbox pharmacy's status call (demo)."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request, slug: str, reference: str):
        status_code, data = sandbox_order_status(slug=slug, headers=request.headers, reference=reference)
        return Response(data, status=status_code)
