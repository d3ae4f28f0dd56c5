"""The exception queue and replays over REST: one view per action, nested input/output
serializers (HackSoft), the same permissions as the console, checked on the server.

Every view needs the queue's (or the replays') view permission; an action also needs its own
(``ConsolePermission`` reads ``required`` from the view). A service's ``Refused`` becomes
``{"detail", "kind"}`` with a 400 (a 409 when another change won the race) through
``core.api.exception_handler``; the maker-checker refusal is a 403 (``PermissionDenied``).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import RefusedSerializer
from core.audit import Actor
from core.problems import Category, Severity, Team
from core.roles import role_of
from exceptions import selectors, services
from exceptions.models import (
    RESOLUTION_CODES,
    Compensation,
    ExceptionState,
    OperationalException,
    Replay,
    ReplayKind,
    ReplayState,
)
from orchestration.workflows.models import StepRun, WorkflowRun

EXC_VIEW = "exceptions.view_operationalexception"
REPLAY_VIEW = "exceptions.view_replay"


class ConsolePermission(BasePermission):
    """A role, and every permission the view names in ``required`` (deny by default)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        required: tuple[str, ...] = getattr(view, "required", ())
        if not (user and user.is_authenticated and role_of(user)) or not required:
            return False
        return all(user.has_perm(perm) for perm in required)


def _actor(request: Request) -> Actor:
    return Actor.person(request.user)


class ActionInput(serializers.Serializer):
    reason = serializers.CharField()


# --- Exceptions -----------------------------------------------------------------------------


class ExceptionOutput(serializers.ModelSerializer):
    assignee = serializers.CharField(source="assignee.get_username", default=None)
    order = serializers.CharField(source="order.enterprise_id", default=None)
    is_overdue = serializers.BooleanField()

    class Meta:
        model = OperationalException
        fields = [
            "id", "state", "category", "severity", "owner_team", "assignee", "system", "step",
            "error_class", "message", "fingerprint", "correlation_id", "order", "workflow_run",
            "step_run", "created_at", "sla_due_at", "is_overdue", "resolved_at",
            "resolution_code", "resolution_note",
        ]  # fmt: skip


class CommentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    author = serializers.CharField(source="author.get_username")
    body = serializers.CharField()
    created_at = serializers.DateTimeField()


class ExceptionDetailOutput(ExceptionOutput):
    # "context" comes from the model through Meta.fields: a declared attribute of that name
    # would hide the serializer's own context.
    comments = CommentOutput(many=True, source="comments.all")

    class Meta(ExceptionOutput.Meta):
        fields = [*ExceptionOutput.Meta.fields, "context", "comments"]


def _exception(pk: int) -> OperationalException:
    try:
        return selectors.exception_get(pk=pk)
    except OperationalException.DoesNotExist:
        raise Http404(f"no exception EXC-{pk}") from None


_ERRORS = {
    400: OpenApiResponse(description="the input is not valid"),
    401: OpenApiResponse(description="no valid token or session"),
    403: OpenApiResponse(description="your role may not do this"),
}
_ONE = {**_ERRORS, 404: OpenApiResponse(description="no such exception or replay")}
_ACTION = {
    **_ONE,
    400: OpenApiResponse(
        RefusedSerializer, description="refused: the input or the record's state does not allow it"
    ),
    409: OpenApiResponse(
        RefusedSerializer, description="another change won the race; read the record again"
    ),
}


def _page_of(item: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """The schema of a LimitOffsetPagination page of ``item``, as the list views answer."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


class ExceptionListApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW,)

    class ExceptionFilterInput(serializers.Serializer):
        # A blank parameter is no filter, as the schema says (allow_blank: no minLength).
        state = serializers.ChoiceField(
            choices=ExceptionState.choices, required=False, allow_blank=True
        )
        category = serializers.ChoiceField(
            choices=Category.choices, required=False, allow_blank=True
        )
        severity = serializers.ChoiceField(
            choices=Severity.choices, required=False, allow_blank=True
        )
        owner_team = serializers.ChoiceField(choices=Team.choices, required=False, allow_blank=True)
        system = serializers.CharField(required=False, max_length=20, allow_blank=True)
        fingerprint = serializers.RegexField(r"^[0-9a-f]{0,64}$", required=False, allow_blank=True)
        assignee = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)

    @extend_schema(
        parameters=[ExceptionFilterInput],
        responses={200: _page_of(ExceptionOutput, "ExceptionPage"), **_ERRORS},
        operation_id="v1_exceptions_list",
        summary="The exception queue (open and retrying unless a state is given)",
    )
    def get(self, request: Request) -> Response:
        params = self.ExceptionFilterInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        filters = selectors.ExceptionFilters(
            states=(data["state"],) if data.get("state") else selectors.ExceptionFilters.states,
            category=data.get("category", ""),
            severity=data.get("severity", ""),
            owner_team=data.get("owner_team", ""),
            system=data.get("system", ""),
            fingerprint=data.get("fingerprint", ""),
            assignee_id=data.get("assignee"),
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.exception_list(filters=filters), request, view=self
        )
        return paginator.get_paginated_response(ExceptionOutput(page, many=True).data)


class ExceptionDetailApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW,)

    @extend_schema(
        responses={200: ExceptionDetailOutput, **_ONE}, summary="One exception with its context"
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(ExceptionDetailOutput(_exception(pk)).data)


class ExceptionRetryApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW, "exceptions.retry_exception")

    @extend_schema(
        request=ActionInput, responses={200: ExceptionOutput, **_ACTION}, summary="Retry the step"
    )
    def post(self, request: Request, pk: int) -> Response:
        exception = _exception(pk)
        data = ActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        retried = services.exception_retry(
            exception=exception, actor=_actor(request), reason=data.validated_data["reason"]
        )
        return Response(ExceptionOutput(retried).data)


class ExceptionAssignApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW, "exceptions.assign_exception")

    class AssignInput(serializers.Serializer):
        assignee = serializers.IntegerField(
            allow_null=True, min_value=1, max_value=2**31 - 1,
            help_text="the person's user id; null returns it to the owner team",
        )  # fmt: skip
        reason = serializers.CharField()

    @extend_schema(
        request=AssignInput,
        responses={200: ExceptionOutput, **_ACTION},
        summary="Assign to a person",
    )
    def post(self, request: Request, pk: int) -> Response:
        exception = _exception(pk)
        data = self.AssignInput(data=request.data)
        data.is_valid(raise_exception=True)
        assignee = None
        if data.validated_data["assignee"] is not None:
            assignee = (
                selectors.assignable_users().filter(pk=data.validated_data["assignee"]).first()
            )
            if assignee is None:
                raise ValidationError({"assignee": "no person with a role has that id"})
        updated = services.exception_assign(
            exception=exception,
            assignee=assignee,
            actor=_actor(request),
            reason=data.validated_data["reason"],
        )
        return Response(ExceptionOutput(selectors.exception_get(pk=updated.pk)).data)


class ExceptionResolveApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW, "exceptions.resolve_exception")

    class ResolveInput(serializers.Serializer):
        code = serializers.ChoiceField(choices=list(RESOLUTION_CODES.items()))
        reason = serializers.CharField()

    @extend_schema(
        request=ResolveInput,
        responses={200: ExceptionOutput, **_ACTION},
        summary="Resolve with a code",
    )
    def post(self, request: Request, pk: int) -> Response:
        exception = _exception(pk)
        data = self.ResolveInput(data=request.data)
        data.is_valid(raise_exception=True)
        resolved = services.exception_resolve(
            exception=exception,
            code=data.validated_data["code"],
            actor=_actor(request),
            reason=data.validated_data["reason"],
        )
        return Response(ExceptionOutput(resolved).data)


class ExceptionIgnoreApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW, "exceptions.resolve_exception")

    @extend_schema(
        request=ActionInput,
        responses={200: ExceptionOutput, **_ACTION},
        summary="Ignore with a reason",
    )
    def post(self, request: Request, pk: int) -> Response:
        exception = _exception(pk)
        data = ActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        ignored = services.exception_ignore(
            exception=exception, actor=_actor(request), reason=data.validated_data["reason"]
        )
        return Response(ExceptionOutput(ignored).data)


class ExceptionCommentApi(APIView):
    permission_classes = [ConsolePermission]
    required = (EXC_VIEW, "exceptions.add_exceptioncomment")

    class CommentInput(serializers.Serializer):
        body = serializers.CharField()

    @extend_schema(
        request=CommentInput, responses={201: CommentOutput, **_ACTION}, summary="Add a comment"
    )
    def post(self, request: Request, pk: int) -> Response:
        exception = _exception(pk)
        data = self.CommentInput(data=request.data)
        data.is_valid(raise_exception=True)
        comment = services.exception_comment(
            exception=exception, body=data.validated_data["body"], actor=_actor(request)
        )
        return Response(CommentOutput(comment).data, status=status.HTTP_201_CREATED)


# --- Replays --------------------------------------------------------------------------------


class ReplayOutput(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.get_username")
    decided_by = serializers.CharField(source="decided_by.get_username", default=None)

    class Meta:
        model = Replay
        fields = [
            "id", "kind", "state", "compensation", "exception", "workflow_run", "step_run",
            "reason", "requested_by", "requested_at", "decided_by", "decided_at",
            "decision_reason", "started_at", "finished_at", "result_message",
        ]  # fmt: skip


class ReplayDetailOutput(ReplayOutput):
    original_payload = serializers.JSONField()
    corrected_payload = serializers.JSONField(allow_null=True)
    preview = serializers.JSONField()
    result = serializers.JSONField()

    class Meta(ReplayOutput.Meta):
        fields = [
            *ReplayOutput.Meta.fields,
            "original_payload",
            "corrected_payload",
            "preview",
            "result",
        ]


def _replay(pk: int) -> Replay:
    try:
        return selectors.replay_get(pk=pk)
    except Replay.DoesNotExist:
        raise Http404(f"no replay RPL-{pk}") from None


class ReplayListApi(APIView):
    permission_classes = [ConsolePermission]
    required = (REPLAY_VIEW,)

    @extend_schema(
        parameters=[
            OpenApiParameter("state", enum=ReplayState.values, required=False),
        ],
        responses={200: _page_of(ReplayOutput, "ReplayPage"), **_ERRORS},
        operation_id="v1_replays_list",
        summary="Replays, newest first",
    )
    def get(self, request: Request) -> Response:
        state = request.query_params.get("state") or ""
        if state and state not in ReplayState.values:
            raise ValidationError({"state": f"one of {', '.join(ReplayState.values)}"})
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.replay_list(state=state), request, view=self)
        return paginator.get_paginated_response(ReplayOutput(page, many=True).data)


class ReplayDetailApi(APIView):
    permission_classes = [ConsolePermission]
    required = (REPLAY_VIEW,)

    @extend_schema(
        responses={200: ReplayDetailOutput, **_ONE},
        summary="One replay with its preview and result",
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(ReplayDetailOutput(_replay(pk)).data)


class ReplayRequestApi(APIView):
    permission_classes = [ConsolePermission]
    required = (REPLAY_VIEW, "exceptions.request_replay")

    class ReplayRequestInput(serializers.Serializer):
        kind = serializers.ChoiceField(choices=ReplayKind.choices)
        step_run = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
        workflow_run = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
        compensation = serializers.ChoiceField(choices=Compensation.choices, required=False)
        corrected_payload = serializers.JSONField(required=False, allow_null=True)
        reason = serializers.CharField()

    @extend_schema(
        request=ReplayRequestInput,
        responses={201: ReplayDetailOutput, **_ACTION},
        summary="Request a replay or a compensation (another person approves it)",
    )
    def post(self, request: Request) -> Response:
        data = self.ReplayRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        step_run = workflow_run = None
        if values.get("step_run"):
            step_run = StepRun.objects.select_related("run").filter(pk=values["step_run"]).first()
            if step_run is None:
                raise ValidationError({"step_run": "no such step run"})
        if values.get("workflow_run"):
            workflow_run = WorkflowRun.objects.filter(pk=values["workflow_run"]).first()
            if workflow_run is None:
                raise ValidationError({"workflow_run": "no such workflow run"})
        replay = services.replay_request(
            kind=values["kind"],
            actor=_actor(request),
            reason=values["reason"],
            step_run=step_run,
            workflow_run=workflow_run,
            compensation=values.get("compensation", ""),
            corrected_payload=values.get("corrected_payload"),
        )
        return Response(ReplayDetailOutput(replay).data, status=status.HTTP_201_CREATED)


class _ReplayDecisionApi(APIView):
    permission_classes = [ConsolePermission]
    required = (REPLAY_VIEW, "exceptions.approve_replay")
    decision = ""

    def post(self, request: Request, pk: int) -> Response:
        replay = _replay(pk)
        data = ActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        service = services.replay_approve if self.decision == "approve" else services.replay_reject
        # A maker-checker refusal is PermissionDenied: a 403.
        decided = service(
            replay=replay, actor=_actor(request), reason=data.validated_data["reason"]
        )
        return Response(ReplayOutput(decided).data)


class ReplayApproveApi(_ReplayDecisionApi):
    decision = "approve"

    @extend_schema(
        request=ActionInput,
        responses={
            **_ACTION,
            200: ReplayOutput,
            403: inline_serializer("Refusal", {"detail": serializers.CharField()}),
        },
        summary="Approve someone else's replay; a worker executes it",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


class ReplayRejectApi(_ReplayDecisionApi):
    decision = "reject"

    @extend_schema(
        request=ActionInput,
        responses={200: ReplayOutput, **_ACTION},
        summary="Reject with a reason",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)
