"""The one model registry every servicer uses: loading, warm-up, devices, batching, ListModels.

    self.models = ModelRegistry(settings, "captioning", (CAPTIONING,), self._caption_batch,
                                shorthands={"CAPTIONING_HF_DIR": CAPTIONING})
    await self.models.warm_up()                  # in the servicer's warm_up: load, place, self-test
    served = self.models.get(request.model)      # NOT_FOUND / INVALID_ARGUMENT naming the field
    result = await served.submit(item)           # the model's own DynamicBatcher
    self.models.infos()                          # ListModels

Which models: the model repository (models/repository.py) in SYN_MODEL_REPOSITORY,
default SYN_CHECKPOINT_DIR (the shipped checkpoints). Every entry whose task the
service serves is loaded, unless SYN_<SERVICE>_MODELS names the entries to serve
(comma-separated; a shipped-format checkpoint in the repository's manifest may be
named too, and takes the service's first task). Shorthands such as
SYN_CAPTIONING_HF_DIR add one `transformers` entry named after the directory (or
SYN_CAPTIONING_HF_NAME).

Loading is strict (models/families.py and models/hf.py): a model that does not load
exactly stops start-up with its name and the first offending keys. Each model then
passes its task's self-test (finite outputs of the right shape) before the service
may report SERVING. The default model of a task is the entry marked `default: true`,
else the first entry of that task.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synesthesia.v1 import common_pb2

from .batching import DynamicBatcher
from .device import describe as describe_device
from .device import select_device
from .errors import invalid_argument, not_found, unavailable
from .models import numeric_metrics
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """One loaded model: its entry, the object implementing its task's interface, its batcher."""

    name: str
    task: str
    entry: Any  # models.repository.ModelEntry
    model: Any
    # Its DynamicBatcher, or with SYN_MODEL_PROCESS its model_process.WorkerProcess (the same interface).
    batcher: DynamicBatcher
    is_default: bool = False
    extra: dict = field(default_factory=dict)
    # SYN_INPUT_WARNINGS: whether the model's notes on inputs outside what it knows are computed.
    warns: bool = True

    async def submit(self, item):
        return await self.batcher.submit(item)

    def input_warnings(self, image) -> list[str]:
        """The model's notes on `image` (e.g. the built-ins: not a ShapesWorld picture), or none when
        SYN_INPUT_WARNINGS is off: the built-ins' check costs about 0.07 ms of CPU per 64 px picture in a
        batch, which an operator whose inputs are known to fit may rather not pay."""
        return self.model.input_warnings(image) if self.warns else []

    def input_warnings_each(self, images: Sequence) -> list[list[str] | Exception]:
        """input_warnings of each of a batch's images. A model may decide them together through an optional
        `input_warnings_each(images)` (the built-ins' check costs about 30% less per picture over a
        batch of 16: one compiled call for all); an image that makes it fail is found one by one and
        gets its exception, so it fails its own call only."""
        if not self.warns:
            return [[] for _ in images]
        each = getattr(self.model, "input_warnings_each", None)
        if each is not None:
            try:
                return list(each(images))
            except Exception:  # noqa: BLE001 - retried picture by picture below
                log.debug("%s: checking a batch's pictures together failed; checking them one by one", self.name,
                          exc_info=True)
        out: list[list[str] | Exception] = []
        for image in images:
            try:
                out.append(self.model.input_warnings(image))
            except Exception as exc:  # noqa: BLE001 - delivered to the call that sent the image
                out.append(exc)
        return out

    @property
    def details(self):
        return self.model.details


class ModelRegistry:
    def __init__(self, settings: Settings, service: str, tasks: Sequence[str],
                 forward: Callable[[ServedModel, list], Sequence], *,
                 shorthands: Mapping[str, str] | None = None, default_options: Mapping[str, Any] | None = None,
                 max_wait_ms: float | None = None, flagged_default_only: Sequence[str] = ()) -> None:
        """`forward(served, items) -> results` runs one batch of one model in its batcher thread; a
        result that is an exception is raised to that item's caller alone. Tasks in
        `flagged_default_only` have a default only when an entry says `default: true` (which
        image-to-image translation to run is not a choice a server should make silently)."""
        self.settings = settings
        self.service = service
        self.tasks = tuple(tasks)
        self.forward = forward
        self.shorthands = dict(shorthands or {})
        self.default_options = dict(default_options or {})
        self.max_wait_ms = settings.max_batch_wait_ms if max_wait_ms is None else max_wait_ms
        self.flagged_default_only = set(flagged_default_only)
        self.device = select_device(settings.device)
        from .acceleration import Acceleration  # torch: only model services build a registry

        # SYN_AUTOCAST / SYN_CHANNELS_LAST / SYN_TORCH_COMPILE, for the families that take them (`accelerate`).
        self.acceleration = Acceleration.from_settings(settings)
        self.models: dict[str, ServedModel] = {}
        # Every model's batcher, a live list (an explanation lane gives way to them).
        self.batchers: list[DynamicBatcher] = []
        self.defaults: dict[str, str] = {}
        self.loaded = False

    # --- which models --------------------------------------------------------------------------

    @property
    def repository(self) -> Path:
        return Path(self.settings.model_repository or self.settings.checkpoint_dir)

    def entries(self) -> list:
        from models.repository import (
            TRANSFORMERS,
            ModelEntry,
            RepositoryError,
            builtin_entry,
            manifest_names,
            read_repository,
        )

        directory = self.repository
        everything = read_repository(directory)
        selection_var = f"{self.service.upper()}_MODELS"
        selection = os.environ.get("SYN_" + selection_var)
        if selection is None:
            chosen = [e for e in everything if e.task in self.tasks]
        else:
            by_name = {e.name: e for e in everything}
            shipped = set(manifest_names(directory))
            chosen = []
            for name in (n.strip() for n in selection.split(",")):
                if not name:
                    continue
                if name in by_name:
                    if by_name[name].task not in self.tasks:
                        raise RepositoryError(f"SYN_{selection_var}: {name!r} is a {by_name[name].task} model; the "
                                              f"{self.service} service serves {', '.join(self.tasks)}")
                    chosen.append(by_name[name])
                elif name in shipped:
                    chosen.append(builtin_entry(name, self.tasks[0], directory, f"SYN_{selection_var}"))
                else:
                    raise RepositoryError(f"SYN_{selection_var}: no model {name!r} in the repository {directory} "
                                          f"(entries: {', '.join(sorted(by_name)) or 'none'})")
        for variable, task in self.shorthands.items():
            path = self.settings.env(variable, "").strip()
            if not path:
                continue
            name_var = variable.removesuffix("_DIR") + "_NAME"
            name = self.settings.env(name_var, "").strip() or os.path.basename(os.path.normpath(path))
            chosen.append(ModelEntry(name, task, TRANSFORMERS, Path(path).expanduser(), origin=f"SYN_{variable}"))
        options = self.default_options
        return [replace(e, options={**options, **e.options}) if options else e for e in chosen]

    # --- lifecycle -----------------------------------------------------------------------------

    def load(self, only: str | None = None) -> None:
        """Load every entry (or the one named `only`: a model's worker process) strictly onto the device
        and give it a batcher (blocking: call in a thread)."""
        from models import families
        from models.repository import RepositoryError

        entries = [e for e in self.entries() if only is None or e.name == only]
        if not entries:
            log.warning("%s: no model in the repository %s for %s", self.service, self.repository,
                        ", ".join(self.tasks))
        acceleration = self.acceleration.on(self.device)  # auto settled for this registry's device
        for entry in entries:
            if entry.name in self.models:
                raise RepositoryError(f"model {entry.name!r} is defined twice ({self.models[entry.name].entry.origin} "
                                      f"and {entry.origin})")
            model = families.load(entry, self.device)
            accelerate = getattr(model, "accelerate", None)
            if accelerate is not None and acceleration.enabled:
                accelerate(acceleration, self.settings.max_batch_size)
                log.info("%s: model %s serves with %s", self.service, entry.name, acceleration.describe())
            batcher = DynamicBatcher(lambda items, name=entry.name: self.forward(self.models[name], items),
                                     max_batch_size=self.settings.max_batch_size, max_wait_ms=self.max_wait_ms,
                                     name=f"{self.service}:{entry.name}", model=entry.name)
            self.models[entry.name] = ServedModel(entry.name, entry.task, entry, model, batcher,
                                                   warns=self.settings.input_warnings)
            self.batchers.append(batcher)
            log.info("%s: loaded %s (%s, %s) from %s on %s", self.service, entry.name, entry.task,
                     model.details.architecture or model.details.family, model.details.source,
                     describe_device(self.device))
        for task in self.tasks:
            of_task = [m for m in self.models.values() if m.task == task]
            flagged = [m for m in of_task if m.entry.default]
            if len(flagged) > 1:
                raise RepositoryError(f"{len(flagged)} {task} models are marked default: "
                                      f"{', '.join(m.name for m in flagged)}")
            if flagged or (of_task and task not in self.flagged_default_only):
                chosen = (flagged or of_task)[0]
                chosen.is_default = True
                self.defaults[task] = chosen.name

    def start_workers(self) -> None:
        """SYN_MODEL_PROCESS: each model batches and runs in a worker process of its own, loaded and
        self-tested there before this returns (blocking: call in a thread)."""
        from .model_process import WorkerProcess

        workers = {name: WorkerProcess(self.service, self.forward.__self__, self.forward, self.settings, name)
                   for name in self.models}
        try:
            for worker in workers.values():  # all at once: their imports and loads overlap
                worker.launch()
            for worker in workers.values():
                worker.wait_ready()
        except BaseException:
            for worker in workers.values():
                worker.abandon()
                worker.close_now()
            raise
        for name, worker in workers.items():
            served = self.models[name]
            self.batchers[self.batchers.index(served.batcher)] = served.batcher = worker

    def self_test(self) -> None:
        """Every model's task check on synthetic inputs (blocking: call in a thread)."""
        import torch

        from models import families

        for served in self.models.values():
            with torch.inference_mode():
                try:
                    families.self_test(served.task, served.model, input_warnings=served.warns)
                except Exception as exc:
                    raise RuntimeError(f"model {served.name!r} failed its warm-up check: {exc}") from exc

    async def warm_up(self) -> None:
        await asyncio.to_thread(self.load)
        await asyncio.to_thread(self.self_test)
        from .model_process import wanted

        use, why = wanted(self.settings.model_process, self.device)
        log.info("%s: %s", self.service, why)
        if use:
            await asyncio.to_thread(self.start_workers)
        self.loaded = True

    async def close(self) -> None:
        await asyncio.gather(*(m.batcher.close() for m in self.models.values()))

    # --- lookups -------------------------------------------------------------------------------

    def check_loaded(self) -> None:
        # The runtime reports NOT_SERVING until warm-up ends, but a client that skips the health
        # check can still reach us earlier.
        if not self.loaded:
            raise unavailable(f"the {self.service} models are still loading; retry shortly")

    def names(self, task: str | None = None) -> list[str]:
        return [n for n, m in self.models.items() if task is None or m.task == task]

    def default(self, task: str | None = None) -> str:
        return self.defaults.get(task or self.tasks[0], "")

    def get(self, requested: str, field_name: str = "model", task: str | None = None) -> ServedModel:
        """The model a request names (or the task's default), else NOT_FOUND / INVALID_ARGUMENT naming
        `field_name`. `task=None` accepts a model of any of the service's tasks (the default: the
        first task's that has one)."""
        self.check_loaded()
        if task is None:
            name = requested or next((self.defaults[t] for t in self.tasks if t in self.defaults), "")
            described = " or ".join(self.tasks)
        else:
            name = requested or self.defaults.get(task, "")
            described = task
        if not name:
            raise invalid_argument(field_name, f"name a {described} model; loaded: "
                                               f"{', '.join(self.names(task)) or 'none'}")
        served = self.models.get(name)
        if served is None:
            raise not_found(field_name, f"unknown model {name!r}; loaded {described} models: "
                                        f"{', '.join(self.names(task)) or 'none'}")
        if task is not None and served.task != task:
            raise invalid_argument(field_name, f"{name!r} is a {served.task} model, not a {task} model")
        return served

    def infos(self) -> list[common_pb2.ModelInfo]:
        """ListModels: every loaded model with its family, source, parameters and whether it is the default."""
        from models.repository import BUILTIN, PYTORCH_CHECKPOINT, TRANSFORMERS

        backends = {BUILTIN: common_pb2.MODEL_BACKEND_BUILTIN, TRANSFORMERS: common_pb2.MODEL_BACKEND_TRANSFORMERS,
                    PYTORCH_CHECKPOINT: common_pb2.MODEL_BACKEND_PYTORCH_CHECKPOINT}
        out = []
        for served in self.models.values():
            details = served.details
            backend = details.backend or (BUILTIN if details.family == BUILTIN else TRANSFORMERS)
            info = common_pb2.ModelInfo(
                name=served.name, task=served.task, backend=backends[backend],
                weights_sha256=details.sha256, device=describe_device(self.device), is_default=served.is_default,
                parameter_count=int(details.parameter_count or 0), family=details.family, source=details.source,
                architecture=details.architecture, notes=details.notes)
            info.metrics.update(numeric_metrics(details.metrics or {}))
            out.append(info)
        return out
