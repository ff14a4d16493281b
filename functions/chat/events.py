"""What a generation tells its reader, from the scheduler's thread to the request's event loop: small
frozen dataclasses read with `match`, so that the type checker finds a reader that forgot a case."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Queued:
    """Waiting for a slot; 0: it starts at once (always the first event)."""

    position: int


@dataclass(frozen=True)
class Started:
    """Admitted into a slot, at this time.perf_counter() (the reader may see it later)."""

    at: float


@dataclass(frozen=True)
class Token:
    id: int
    at: float = 0.0  # time.perf_counter() when the scheduler produced it (it may reach its reader later)


@dataclass(frozen=True)
class Done:
    """The end: eos | length | stopped."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """The end, by an error of the generation."""

    message: str


Event = Queued | Started | Token | Done | Failed
END = (Done, Failed)  # the last event of every generation
