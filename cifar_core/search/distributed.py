"""keras-tuner's distributed tuning for the two-stage search: one chief, many workers.

keras-tuner's model: a chief process holds the oracle and serves it over gRPC; workers ask it
for trials, run them and report back. The roles come from keras-tuner's environment variables:
``KERASTUNER_TUNER_ID`` (``chief`` for the chief, any other unique name for a worker),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where the chief listens).

Two stages share one address. A worker names the stage it asks for in its tuner id
(``worker1@stage2``); the chief serves the stage that is open, makes a worker that asks for the
next stage wait until the grid is known (stage 1 finished everywhere), and tells a worker that
asks for a finished stage to move on. It uses keras-tuner's own servicer, messages and client;
only the serving loop is ours (keras-tuner's polls every 20 seconds before it can exit).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent import futures

from cifar_core.errors import ConfigError

ENV_TUNER_ID = "KERASTUNER_TUNER_ID"
ENV_ORACLE_IP = "KERASTUNER_ORACLE_IP"
ENV_ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
CHIEF_ID = "chief"
STAGE_SEPARATOR = "@stage"
WAIT_SECONDS = 50 * 60  # longest a request waits for the next stage (client gives up at 60)
FINAL_GRACE_SECONDS = 30.0  # after the search, how long the chief waits for workers to leave


def distributed_role() -> str | None:
    """``"chief"``, ``"worker"`` or None, from keras-tuner's environment variables."""
    if not os.environ.get(ENV_ORACLE_IP):
        return None
    missing = [name for name in (ENV_ORACLE_PORT, ENV_TUNER_ID) if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"{ENV_ORACLE_IP} is set but {' and '.join(missing)} is not: a "
                          "distributed search needs all three (see `cifar-core tune --help`)")
    return "chief" if CHIEF_ID in os.environ[ENV_TUNER_ID] else "worker"


def configure_environment(role: str, *, tuner_id: str | None, ip: str | None,
                          port: int | None) -> None:
    """Set keras-tuner's variables from CLI flags (flags win over the environment)."""
    if tuner_id:
        os.environ[ENV_TUNER_ID] = tuner_id
    elif role == "chief":
        os.environ[ENV_TUNER_ID] = CHIEF_ID
    if ip:
        os.environ[ENV_ORACLE_IP] = ip
    if port is not None:
        os.environ[ENV_ORACLE_PORT] = str(port)
    os.environ.setdefault(ENV_ORACLE_IP, "127.0.0.1")
    if not os.environ.get(ENV_ORACLE_PORT):
        raise ConfigError(f"the chief's port is needed: --oracle-port PORT or {ENV_ORACLE_PORT}")
    if not os.environ.get(ENV_TUNER_ID):
        raise ConfigError(f"a worker needs a unique name: --tuner-id NAME or {ENV_TUNER_ID}")
    actual = "chief" if CHIEF_ID in os.environ[ENV_TUNER_ID] else "worker"
    if actual != role:
        raise ConfigError(f"tuner id {os.environ[ENV_TUNER_ID]!r} makes this process a "
                          f"{actual}, not a {role}: keras-tuner treats any id containing "
                          f"'{CHIEF_ID}' as the chief")


def stage_tuner_id(base: str, stage: int) -> str:
    return f"{base}{STAGE_SEPARATOR}{stage}"


def split_tuner_id(tuner_id: str) -> tuple[str, int | None]:
    base, sep, stage = tuner_id.rpartition(STAGE_SEPARATOR)
    if sep and stage.isdigit():
        return base, int(stage)
    return tuner_id, None


def _make_servicer_class():
    # keras-tuner imports its gRPC modules lazily (protobuf versions); so do we.
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from keras_tuner.src.engine import hyperparameters as hp_module
    from keras_tuner.src.engine import trial as trial_module

    class StagedOracleServicer(OracleServicer):
        """keras-tuner's servicer, serving the open stage's oracle (see the module doc)."""

        def __init__(self, min_workers: int = 1):
            super().__init__(oracle=None)
            self.condition = threading.Condition()
            self.stage = 0
            self.finished = False
            self.oracles: dict = {}
            self.stop_issued: dict[int, bool] = {}
            self.owners: dict[tuple[int, str], str] = {}
            self.workers: set[str] = set()
            self.released: set[str] = set()  # workers told that the last stage is over
            self.last_stage = 2
            self.min_workers = min_workers
            self.on_trial_created: Callable | None = None
            self.on_trial_ended: Callable | None = None

        def open_stage(self, stage: int, oracle) -> None:
            with self.condition:
                self.oracles[stage] = oracle
                self.oracle = oracle
                self.stage = stage
                self.stop_issued[stage] = False
                self.condition.notify_all()

        def finish(self) -> None:
            with self.condition:
                self.finished = True
                self.condition.notify_all()

        def stage_done(self, stage: int) -> bool:
            oracle = self.oracles[stage]
            over = self.stop_issued.get(stage, False) or oracle.exhausted()
            return over and not oracle.ongoing_trials and not oracle._retry_queue

        def _stopped(self):
            trial = trial_module.Trial(hp_module.HyperParameters(), status="STOPPED")
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

        def CreateTrial(self, request, context):
            name, wanted = split_tuner_id(request.tuner_id)
            with self.condition:
                self.workers.add(name)
                self.condition.notify_all()
                self.condition.wait_for(
                    lambda: self.finished or (
                        len(self.workers) >= self.min_workers and self.stage > 0
                        and (wanted is None or self.stage >= wanted)),
                    timeout=WAIT_SECONDS)
                if self.finished or self.stage == 0 or (
                        wanted is not None and wanted != self.stage):
                    if self.finished:
                        self.released.add(name)
                        self.condition.notify_all()
                    return self._stopped()  # finished, not open yet, or a stage that is over
                stage, oracle = self.stage, self.oracles[self.stage]
            trial = oracle.create_trial(request.tuner_id)
            with self.condition:
                if trial.status == "STOPPED":
                    self.stop_issued[stage] = True
                    if stage == self.last_stage:
                        self.released.add(name)
                    self.condition.notify_all()
                elif trial.status == "RUNNING":
                    self.owners[(stage, trial.trial_id)] = name
            if trial.status == "RUNNING" and self.on_trial_created:
                self.on_trial_created(stage, trial, name)
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

        def GetSpace(self, request, context):
            with self.condition:  # a worker may ask before the first stage is open
                self.condition.wait_for(lambda: self.finished or self.stage > 0,
                                        timeout=WAIT_SECONDS)
                oracle = self.oracle
            space = oracle.get_space() if oracle is not None else hp_module.HyperParameters()
            return protos.get_service().GetSpaceResponse(hyperparameters=space.to_proto())

        def EndTrial(self, request, context):
            response = super().EndTrial(request, context)
            if self.on_trial_ended:
                trial = self.oracle.get_trial(request.trial.trial_id)
                self.on_trial_ended(self.stage, trial)
            return response

    return StagedOracleServicer


class ChiefServer:
    """Serves the stages to workers; ``run_stage`` returns once a stage is finished."""

    def __init__(self, *, min_workers: int = 1, log: Callable[[str], None] = print,
                 poll_seconds: float = 0.2):
        import grpc
        from keras_tuner.src import protos

        self.log, self.poll_seconds = log, poll_seconds
        self.servicer = _make_servicer_class()(min_workers=min_workers)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        protos.get_service_grpc().add_OracleServicer_to_server(self.servicer, self.server)
        ip, port = os.environ[ENV_ORACLE_IP], os.environ[ENV_ORACLE_PORT]
        try:
            bound = self.server.add_insecure_port(f"{ip}:{port}")
        except RuntimeError:
            bound = 0
        if not bound:
            raise ConfigError(f"the chief cannot listen on {ip}:{port} (in use, or not an "
                              "address of this machine)")
        self.address = f"{ip}:{port}"
        self.server.start()
        log(f"search chief: serving the oracle on {self.address}")

    def run_stage(self, stage: int, oracle, on_poll: Callable[[], None] | None = None) -> None:
        self.servicer.open_stage(stage, oracle)
        while not self.servicer.stage_done(stage):
            time.sleep(self.poll_seconds)
            if on_poll:
                on_poll()

    def owner(self, stage: int, trial_id: str) -> str | None:
        return self.servicer.owners.get((stage, trial_id))

    def close(self, wait_for_workers: bool = True) -> None:
        """Tell waiting workers the search is over, give the others a moment (a finished
        search only: they ask for their next trial once the current one ends), stop serving."""
        self.servicer.finish()
        if wait_for_workers:
            with self.servicer.condition:
                self.servicer.condition.wait_for(
                    lambda: self.servicer.released >= self.servicer.workers,
                    timeout=FINAL_GRACE_SECONDS)
        self.server.stop(grace=2).wait()
