"""Typed request errors. Each maps to one HTTP status and a reason label for the rejection metric."""

REASON_HEADER = "x-reject-reason"
"""Names a refusal's reason for the guard's rejection counter (http/guard.py)."""


class RequestError(Exception):
    status = 400
    reason = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict:
        return {"error": self.message}


class InvalidInput(RequestError):
    status, reason = 400, "invalid_input"


class InvalidBody(RequestError):  # not the API's request shape: malformed JSON, a top-level field missing or mistyped
    status, reason = 400, "invalid_body"


class TooManyInstances(RequestError):
    status, reason = 400, "too_many_instances"


class NonFiniteOutput(RequestError):  # the answer to valid input overflowed (input far outside training)
    status, reason = 422, "non_finite_output"


class UnknownModel(RequestError):
    status, reason = 404, "unknown_model"


class ModelNotReady(RequestError):
    status, reason = 503, "model_not_ready"


class Overloaded(RequestError):  # predicted to miss max_latency_ms
    status, reason = 503, "overloaded"


class DeadlineUnmet(RequestError):  # the OIP `timeout` cannot be met, or passed while the request waited
    status, reason = 504, "deadline"


class QueueFull(RequestError):  # the model's queue in this worker holds max_queue requests already
    status, reason = 429, "queue_full"


def validation_problems(error, whole: str) -> str:
    """A pydantic ValidationError's problems on one line, each at its field ('a.0: ...'), `whole` where it has none."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in error.errors())


RETRY_AFTER_SECONDS = 1
"""Sent with every 429 and 503: load moves in well under a second, so a client need not wait longer."""
