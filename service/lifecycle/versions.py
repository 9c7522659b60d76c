"""Which versions of a model are served (the version policy), and which of them answers each request: a share of
the requests by weight (a canary), the same version always for the same routing key, and a copy of some requests
for a shadow candidate (lifecycle/shadow.py)."""

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from models.manifest import held_back_in_store, stored_oldest_first

ROUTING_KEY_HEADER = "X-Routing-Key"
ALIASES = ("latest", "previous")
"""Names a weight or the shadow may use for a version: the newest served, and the one before it."""


class VersionPolicy(BaseModel):
    """One model's versions and traffic; from MODELSERVE_VERSION_POLICY, or the repository API's load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latest: PositiveInt = 1
    """Serve the newest N versions in the store (where `versions` is empty)."""
    versions: tuple[str, ...] = ()
    """Serve exactly these versions."""
    weights: dict[str, float] = Field(default_factory=dict)
    """Version (or 'latest', 'previous') -> its share of the requests that name no version, relative to the other
    weights; versions without one get none. Empty: all to the newest."""
    shadow: str | None = None
    """A version (or 'latest', 'previous') that also gets a copy of `shadow_share` of the requests, in the
    background: its answers are compared with the client's, never returned."""
    shadow_share: float = Field(0.1, gt=0, le=1)

    def model_post_init(self, _) -> None:
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError(f"weights must not be negative: {self.weights}")
        if self.weights and not sum(self.weights.values()) > 0:
            raise ValueError(f"at least one weight must be positive: {self.weights}")

    @property
    def follows_store(self) -> bool:
        """Whether a new version in the store changes what is served."""
        return not self.versions

    def wanted(self, stored: list[str], held: dict[str, str]) -> list[str]:
        """The versions to serve, from the store's versions (newest first) and those held back by a breaking change:
        the newest N not held back and the policy's named ones, held back or not. Newest first, those held back last:
        `latest`, `previous` and a request naming no version land on one only where the weights send them. KeyError
        names a version the policy names and the store lacks."""
        named = [v for v in (*self.versions, *self.weights, self.shadow) if v is not None and v not in ALIASES]
        missing = [v for v in named if v not in stored]
        if missing:
            raise KeyError(f"version {missing[0]!r} is not in the store")
        newest = [v for v in stored if v not in held][:self.latest] if not self.versions else []
        chosen = set(named) | set(newest)
        return sorted((v for v in stored if v in chosen), key=lambda v: v in held)  # (a stable sort)


def stored_versions(name: str) -> tuple[list[str], dict[str, str]]:
    """The versions of `name` in the store, newest first (models/manifest.py stored_oldest_first, reversed), and those
    held back by a breaking change, with why (reads the store: call it off the event loop)."""
    oldest_first = stored_oldest_first(name)
    held = held_back_in_store(Path(oldest_first[0].path).parent, [m.tag.version for m in oldest_first])
    return [m.tag.version for m in reversed(oldest_first)], held


def held_back_message(name: str, version: str, why: str) -> str:
    return (f"{why}; serve it once its clients are ready: `modelserve promote {name}:{version}` (every server), or "
            f'POST /v2/repository/models/{name}/load with {{"parameters": {{"version": "{version}"}}}} (this server)')


def key_fraction(key: bytes) -> float:
    """A routing key's place in [0, 1): the same in every worker and every run (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


@dataclass
class ModelVersions:
    """The versions of one model this worker serves (ServedModel, newest first) under their policy."""

    served: list
    policy: VersionPolicy
    _split: list = field(init=False, repr=False)  # [(cumulative share, model)]: the weighted versions
    _shadow: object = field(init=False, repr=False)  # the shadow candidate's ServedModel, or None

    def __post_init__(self) -> None:
        weights = [(self.find(v), w) for v, w in self.policy.weights.items() if w > 0]
        weights = [(model, w) for model, w in weights if model is not None]
        total, cumulative, self._split = sum(w for _, w in weights), 0.0, []
        for model, weight in weights:
            cumulative += weight / total
            self._split.append((cumulative, model))
        self._shadow = self.find(self.policy.shadow) if self.policy.shadow else None
        weighted = [model for _, model in self._split] or [self.newest]
        for model in self.served:  # a version that only shadows runs off the event loop (batching/batcher.py)
            model.batcher.background = model is self._shadow and model not in weighted

    @property
    def newest(self):
        return self.served[0]

    def find(self, version: str):
        """The served model of `version` (or of an alias), or None."""
        if version in ALIASES:
            index = ALIASES.index(version)
            return self.served[index] if index < len(self.served) else None
        return next((m for m in self.served if m.artifacts.version == version), None)

    def route(self, routing_key: bytes | None):
        """The version that answers a request naming none: by its routing key where it has one, else by weight."""
        if not self._split:
            return self.served[0]
        point = key_fraction(routing_key) if routing_key else random.random()
        return next((model for share, model in self._split if point < share), self._split[-1][1])

    def shadow_for(self, primary):
        """The candidate that also gets this request, or None (the share not drawn, or it answered it already)."""
        shadow = self._shadow
        if shadow is None or shadow is primary or random.random() >= self.policy.shadow_share:
            return None
        return shadow

    def describe(self) -> list[dict]:
        """Each served version with its state, weight and shadow share (the metadata routes)."""
        shares, previous = {}, 0.0
        for share, model in self._split:
            shares[model.artifacts.version], previous = round(share - previous, 6), share
        if not self._split:
            shares[self.newest.artifacts.version] = 1.0
        return [{"version": m.artifacts.version, "state": "READY" if m.ready else "LOADING",
                 "traffic_share": shares.get(m.artifacts.version, 0.0),
                 "shadow_share": self.policy.shadow_share if m is self._shadow else 0.0} for m in self.served]
