"""Approvals' gRPC servicer: translates between the contract and the use cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from govmesh.approvals.v1 import approvals_pb2 as pb
from govmesh.approvals.v1 import approvals_pb2_grpc
from govmesh.change_feed import ChangeFeed, Full
from govmesh.config import Settings
from govmesh.db import Database
from govmesh.errors import Unavailable
from govmesh.grpcserver import ApiDefinition, current_caller
from govmesh.parties import Parties
from services.approvals import bootstrap
from services.approvals.app import ApprovalsApp, checked_case_id

#: Cases one api process streams at once: each watcher a coroutine on the api's event loop
#: (grpc.aio), parked on the feed's event until its case changes (govmesh/change_feed.py).
MAX_WATCHERS = 1000
#: How long a watcher waits for a change before it reads its case again anyway (a change the
#: feed saw wakes it sooner; a client that left cancels it at once).
IDLE_SECONDS = 60.0


class ApprovalsServicer(approvals_pb2_grpc.ApprovalsServiceServicer):
    def __init__(self, approvals: ApprovalsApp, parties: Parties) -> None:
        self.approvals = approvals
        self.parties = parties
        self.case_types = pb.ListCaseTypesResponse(case_types=approvals.list_case_types())
        self.feed: ChangeFeed[str, None] = ChangeFeed("cases", approvals.latest_revisions, capacity=MAX_WATCHERS)

    def ListCaseTypes(
        self, request: pb.ListCaseTypesRequest, context: grpc.ServicerContext
    ) -> pb.ListCaseTypesResponse:
        return self.case_types

    def SubmitCase(self, request: pb.SubmitCaseRequest, context: grpc.ServicerContext) -> pb.SubmitCaseResponse:
        case, created = self.approvals.submit(request, current_caller(), self.parties)
        return pb.SubmitCaseResponse(case=case, created=created)

    def GetCase(self, request: pb.GetCaseRequest, context: grpc.ServicerContext) -> pb.GetCaseResponse:
        return pb.GetCaseResponse(case=self.approvals.read(request.case_id, current_caller()))

    def ListCases(self, request: pb.ListCasesRequest, context: grpc.ServicerContext) -> pb.ListCasesResponse:
        which = request.WhichOneof("applicant")
        applicant: str | None = None
        if which == "applicant_identifier":
            party = self.parties.resolve(which, identifier=request.applicant_identifier)
            if party is None:
                return pb.ListCasesResponse()
            applicant = party.subject_id
        elif which == "applicant_subject_id":
            applicant = request.applicant_subject_id
        return self.approvals.list_cases(request, applicant, current_caller())

    async def WatchCase(
        self, request: pb.WatchCaseRequest, context: grpc.aio.ServicerContext[pb.WatchCaseRequest, pb.WatchCaseResponse]
    ) -> AsyncIterator[pb.WatchCaseResponse]:
        # Checked before it joins the feed: the feed reads every watched case in one query, which
        # one id the database refuses (a NUL) would fail for every watcher of this process.
        checked_case_id(request.case_id)
        try:
            subscription = self.feed.subscribe([request.case_id])
        except Full:
            busy = f"this server already streams {MAX_WATCHERS} cases; retry shortly or poll GetCase"
            raise Unavailable(busy) from None
        with subscription:

            async def moved(revision: int) -> object:
                return await subscription.wait({request.case_id: revision}, IDLE_SECONDS)

            async for case in self.approvals.watch(request.case_id, current_caller(), moved):
                yield pb.WatchCaseResponse(case=case)

    def ListReviewTasks(
        self, request: pb.ListReviewTasksRequest, context: grpc.ServicerContext
    ) -> pb.ListReviewTasksResponse:
        return self.approvals.list_review_tasks(request, current_caller())

    def CompleteReviewTask(
        self, request: pb.CompleteReviewTaskRequest, context: grpc.ServicerContext
    ) -> pb.CompleteReviewTaskResponse:
        task, case = self.approvals.complete_review_task(request, current_caller())
        return pb.CompleteReviewTaskResponse(task=task, case=case)

    def CancelCase(self, request: pb.CancelCaseRequest, context: grpc.ServicerContext) -> pb.CancelCaseResponse:
        case, _ = self.approvals.cancel(request, current_caller())
        return pb.CancelCaseResponse(case=case)


def build(settings: Settings, db: Database) -> ApiDefinition:
    parts = bootstrap.build(settings, db, "api")
    assert parts.parties is not None, "an api resolves parties through identity"
    servicer = ApprovalsServicer(parts.approvals, parts.parties)
    return ApiDefinition(
        service="approvals",
        full_name=pb.DESCRIPTOR.services_by_name["ApprovalsService"].full_name,
        add_servicer=lambda server: approvals_pb2_grpc.add_ApprovalsServiceServicer_to_server(servicer, server),
        streams=MAX_WATCHERS,
    )
