"""Declarative pipelines for RunPipeline: parse a YAML/JSON spec into a DAG and run it.

Spec (docs/pipelines.md):

    steps:
      - name: look                       # unique, [a-z_][a-z0-9_]*
        call: captioning.Caption         # <service>.<unary RPC>
        request:                         # the RPC's request message as a mapping
          image: {data: "${inputs.scene}"}
      - name: draw
        call: generation.TextToImage
        request: {prompt: "${look.caption}", image_count: 2, seed: 7}
        after: [look]                    # optional; references already imply it

A string that is exactly "${ref}" is replaced by the referenced value (a
message, bytes, a list, a number); "${ref}" inside a longer string is
interpolated as text. Refs are `inputs.NAME` (the request's binary inputs) or
`STEP.field.sub[INDEX]...` into an earlier step's response. Steps run as soon
as what they depend on has finished, so independent branches run concurrently.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from services.gateway.upstreams import Upstream, call
from services.runtime import ServiceError, invalid_argument
from synesthesia.services import UPSTREAMS
from synesthesia.v1 import gateway_pb2

MAX_SPEC_BYTES = 64 * 1024
MAX_STEPS = 32
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
REF = re.compile(r"\$\{([^}]+)\}")
PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")

# Unary RPCs a step may call: "<service>.<Method>" -> request class.
CALLS: dict[str, type[Message]] = {}
for _service in UPSTREAMS:
    for _method in _service.descriptor().methods:
        if not _method.client_streaming and not _method.server_streaming:
            # The request may be defined in another .proto file (explain.proto): look it up by descriptor.
            CALLS[f"{_service.name}.{_method.name}"] = message_factory.GetMessageClass(_method.input_type)


@dataclass
class Step:
    index: int
    name: str
    call: str
    request: dict
    deps: set[str] = field(default_factory=set)

    @property
    def field(self) -> str:
        return f"spec.steps[{self.index}]"


def _refs(value) -> list[str]:
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def parse(spec: str, input_names: set[str]) -> list[Step]:
    if not spec.strip():
        raise invalid_argument("spec", "is empty")
    if len(spec.encode()) > MAX_SPEC_BYTES:
        raise invalid_argument("spec", f"is larger than {MAX_SPEC_BYTES} bytes")
    try:
        document = yaml.safe_load(spec)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise invalid_argument("spec", f"is not valid YAML or JSON: {exc}") from None
    raw_steps = document.get("steps") if isinstance(document, dict) else None
    if not isinstance(raw_steps, list) or not raw_steps:
        raise invalid_argument("spec.steps", "must be a non-empty list of steps")
    if len(raw_steps) > MAX_STEPS:
        raise invalid_argument("spec.steps", f"at most {MAX_STEPS} steps")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        where = f"spec.steps[{i}]"
        if not isinstance(raw, dict):
            raise invalid_argument(where, "must be a mapping with name, call and request")
        name, rpc, request = raw.get("name"), raw.get("call"), raw.get("request", {})
        if not isinstance(name, str) or not NAME.match(name) or name == "inputs":
            raise invalid_argument(f"{where}.name", "must match [a-z_][a-z0-9_]* and not be 'inputs'")
        if name in {s.name for s in steps}:
            raise invalid_argument(f"{where}.name", f"duplicate step name {name!r}")
        if rpc not in CALLS:
            raise invalid_argument(f"{where}.call", f"unknown call {rpc!r}; known: {', '.join(sorted(CALLS))}")
        if not isinstance(request, dict):
            raise invalid_argument(f"{where}.request", "must be a mapping of the request's fields")
        after = raw.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise invalid_argument(f"{where}.after", "must be a list of step names")
        deps = set(after)
        for ref in _refs(request):
            head = ref.split(".", 1)[0].split("[", 1)[0]
            if head == "inputs":
                if ref.removeprefix("inputs.") not in input_names:
                    raise invalid_argument(f"{where}.request", f"refers to missing input {ref!r}")
            else:
                deps.add(head)
        steps.append(Step(i, name, rpc, request, deps))
    names = {s.name for s in steps}
    for step in steps:
        unknown = step.deps - names
        if unknown:
            raise invalid_argument(f"{step.field}", f"depends on unknown steps {sorted(unknown)}")
    _check_acyclic(steps)
    return steps


def _check_acyclic(steps: list[Step]) -> None:
    state: dict[str, int] = {}
    by_name = {s.name: s for s in steps}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise invalid_argument("spec.steps", f"cycle: {' -> '.join(trail + [name])}")
        state[name] = 1
        for dep in sorted(by_name[name].deps):
            visit(dep, trail + [name])
        state[name] = 2

    for step in steps:
        visit(step.name, [])


def _lookup(ref: str, results: dict[str, Message], inputs: dict[str, bytes], where: str):
    if ref.startswith("inputs."):
        return inputs[ref.removeprefix("inputs.")]
    value = None
    for n, part in enumerate(ref.split(".")):
        match = PATH_PART.fullmatch(part)
        if not match:
            raise invalid_argument(where, f"bad reference {ref!r}")
        key, indexes = match.groups()
        try:
            value = results[key] if n == 0 else getattr(value, key)
            for index in re.findall(r"\[(\d+)\]", indexes):
                value = value[int(index)]
        except (AttributeError, IndexError, KeyError, TypeError):
            raise invalid_argument(where, f"reference {ref!r} does not resolve in the step outputs") from None
    return value


def _resolve(value, results, inputs, where):
    if isinstance(value, str):
        whole = REF.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), results, inputs, where)
        return REF.sub(lambda m: str(_lookup(m.group(1), results, inputs, where)), value)
    if isinstance(value, dict):
        return {k: _resolve(v, results, inputs, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results, inputs, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def fill(message: Message, values: dict, where: str) -> Message:
    """Set a message's fields from a mapping whose leaves may be messages, bytes or scalars."""
    for key, value in values.items():
        fd = message.DESCRIPTOR.fields_by_name.get(key)
        here = f"{where}.{key}"
        if fd is None:
            raise invalid_argument(here, f"{message.DESCRIPTOR.name} has no field {key!r}")
        target = getattr(message, key)
        try:
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                target.update({str(k): str(v) for k, v in value.items()})
            elif fd.is_repeated:
                single = isinstance(value, (str, bytes, dict, Message)) or not hasattr(value, "__iter__")
                items = [value] if single else list(value)
                for item in items:
                    if fd.message_type is None:
                        target.append(item)
                    elif isinstance(item, Message):
                        target.add().CopyFrom(item)
                    else:
                        fill(target.add(), item, here)
            elif fd.message_type is not None:
                if isinstance(value, Message):
                    target.CopyFrom(value)
                elif isinstance(value, dict):
                    fill(target, value, here)
                else:
                    raise TypeError(f"expected a {fd.message_type.name} or a mapping")
            elif fd.enum_type is not None and isinstance(value, str):
                setattr(message, key, fd.enum_type.values_by_name[value].number)
            else:
                setattr(message, key, value)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise invalid_argument(here, f"cannot set from {type(value).__name__}: {exc}") from None
    return message


def _event(step: str, state: int, **fields) -> gateway_pb2.RunPipelineResponse:
    return gateway_pb2.RunPipelineResponse(step=step, state=state, **fields)


async def run(steps: list[Step], inputs: dict[str, bytes], upstreams: dict[str, Upstream], context):
    """Run the DAG, yielding step events; raise the first failure after the last event."""
    events: asyncio.Queue = asyncio.Queue()
    results: dict[str, Message] = {}
    finished = {s.name: asyncio.Event() for s in steps}
    failures: list[tuple[Step, ServiceError]] = []

    async def run_step(step: Step) -> None:
        try:
            for dep in step.deps:
                await finished[dep].wait()
            if failures or any(dep not in results for dep in step.deps):
                await events.put(_event(step.name, gateway_pb2.STEP_STATE_SKIPPED))
                return
            await events.put(_event(step.name, gateway_pb2.STEP_STATE_STARTED))
            started = time.perf_counter()
            service, method = step.call.split(".")
            try:
                values = _resolve(step.request, results, inputs, f"{step.field}.request")
                request = fill(CALLS[step.call](), values, f"{step.field}.request")
                response = await call(upstreams[service], method, request, context)
            except ServiceError as error:
                failures.append((step, error))
                await events.put(_event(step.name, gateway_pb2.STEP_STATE_FAILED,
                                        elapsed_ms=(time.perf_counter() - started) * 1000,
                                        error_code=error.code.name, error_message=error.message))
                return
            results[step.name] = response
            await events.put(_event(step.name, gateway_pb2.STEP_STATE_FINISHED,
                                    elapsed_ms=(time.perf_counter() - started) * 1000,
                                    output_json=json_format.MessageToJson(
                                        response, preserving_proto_field_name=True, indent=None)))
        finally:
            finished[step.name].set()

    tasks = [asyncio.create_task(run_step(s)) for s in steps]
    everything = asyncio.gather(*tasks)
    try:
        while not (everything.done() and events.empty()):
            getter = asyncio.create_task(events.get())
            await asyncio.wait({getter, everything}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
    finally:
        for task in tasks:
            task.cancel()
    if failures:
        step, error = failures[0]
        raise ServiceError(error.code, f"pipeline failed at step {step.name!r} ({step.call}): {error.message}")

