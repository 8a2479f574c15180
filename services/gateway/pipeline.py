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

A spec is untrusted input, so every cost is capped before it is paid (the
limits are PipelineLimits, from SYN_PIPELINE_* settings): YAML anchors and
aliases are refused (a 300-byte spec of nested aliases expands to 10^7
nodes), as are nesting deeper than SYN_PIPELINE_MAX_DEPTH, more than
SYN_PIPELINE_MAX_STEPS steps and integers longer than
SYN_PIPELINE_MAX_INTEGER_DIGITS digits. References walk proto fields only
(never Python attributes such as `__class__`), indexes only repeated fields,
and text built by interpolation stays under SYN_PIPELINE_MAX_INTERPOLATED_BYTES.
Any failure of a step ends the call with that step's status.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field

import grpc
import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from services.gateway.upstreams import Upstream, call
from services.runtime import ServiceError, invalid_argument, quoted, read_settings, resource_exhausted
from synesthesia.services import UPSTREAMS
from synesthesia.v1 import gateway_pb2

log = logging.getLogger(__name__)
MAX_SPEC_BYTES = 64 * 1024
MAX_STEPS = 32
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
REF = re.compile(r"\$\{([^}]+)\}")
PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d{1,9}\])*)")


@dataclass(frozen=True)
class PipelineLimits:
    """What one spec may cost; each refusal names its setting."""

    max_spec_bytes: int = MAX_SPEC_BYTES
    max_steps: int = MAX_STEPS
    max_depth: int = 32
    max_integer_digits: int = 19  # int64
    max_interpolated_bytes: int = 64 * 1024

    @classmethod
    def from_env(cls) -> "PipelineLimits":
        """SYN_PIPELINE_<FIELD>, typed and checked like every service setting."""
        return read_settings(cls, "SYN_PIPELINE_")


DEFAULT_LIMITS = PipelineLimits()


class _SpecError(yaml.YAMLError):
    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


def _loader(limits: PipelineLimits) -> type[yaml.SafeLoader]:
    """A SafeLoader that refuses anchors and aliases, deep nesting and huge integers as it composes."""

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                mark = event.start_mark
                raise _SpecError(invalid_argument("spec", f"YAML anchors and aliases are not allowed (line "
                                                          f"{mark.line + 1}): write each value out"))
            self.depth += 1
            if self.depth > limits.max_depth:
                raise _SpecError(resource_exhausted("spec", f"nesting is deeper than {limits.max_depth} levels "
                                                            "(SYN_PIPELINE_MAX_DEPTH)"))
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_yaml_int(self, node):
            digits = node.value.lstrip("+-").replace("_", "")
            if len(digits) > limits.max_integer_digits:
                raise _SpecError(invalid_argument("spec", f"an integer of {len(digits)} digits (line "
                                                          f"{node.start_mark.line + 1}); at most "
                                                          f"{limits.max_integer_digits} (SYN_PIPELINE_MAX_INTEGER_DIGITS)"))
            return super().construct_yaml_int(node)

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    return Loader

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


def parse(spec: str, input_names: set[str], limits: PipelineLimits = DEFAULT_LIMITS) -> list[Step]:
    """The spec as steps in a DAG; bounded in time and memory by `limits` (call it off the event loop)."""
    if not spec.strip():
        raise invalid_argument("spec", "is empty")
    size = len(spec.encode(errors="replace"))
    if size > limits.max_spec_bytes:
        raise resource_exhausted("spec", f"is {size} bytes; the limit is {limits.max_spec_bytes} "
                                         "(SYN_PIPELINE_MAX_SPEC_BYTES)")
    try:
        document = yaml.load(spec, Loader=_loader(limits))  # noqa: S506 - a SafeLoader; JSON is YAML too
    except _SpecError as exc:
        raise exc.error from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise invalid_argument("spec", f"is not valid YAML or JSON{where}: {problem}") from None
    except RecursionError:  # a flow collection nested past Python's stack, before our depth count
        raise resource_exhausted("spec", f"nesting is deeper than {limits.max_depth} levels "
                                         "(SYN_PIPELINE_MAX_DEPTH)") from None
    raw_steps = document.get("steps") if isinstance(document, dict) else None
    if not isinstance(raw_steps, list) or not raw_steps:
        raise invalid_argument("spec.steps", "must be a non-empty list of steps")
    if len(raw_steps) > limits.max_steps:
        raise resource_exhausted("spec.steps", f"{len(raw_steps)} steps; the limit is {limits.max_steps} "
                                               "(SYN_PIPELINE_MAX_STEPS)")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        where = f"spec.steps[{i}]"
        if not isinstance(raw, dict):
            raise invalid_argument(where, "must be a mapping with name, call and request")
        name, rpc, request = raw.get("name"), raw.get("call"), raw.get("request", {})
        if not isinstance(name, str) or not NAME.fullmatch(name) or name == "inputs":
            raise invalid_argument(f"{where}.name", "must match [a-z_][a-z0-9_]* and not be 'inputs'")
        if name in {s.name for s in steps}:
            raise invalid_argument(f"{where}.name", f"duplicate step name {quoted(name)}")
        if not isinstance(rpc, str) or rpc not in CALLS:
            raise invalid_argument(f"{where}.call", f"unknown call {quoted(rpc)}; known: {', '.join(sorted(CALLS))}")
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
                    raise invalid_argument(f"{where}.request", f"refers to missing input {quoted(ref)}")
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
    """A reference's value: an input's bytes, or a proto field (or element) of a step's response."""
    if ref.startswith("inputs."):
        return inputs[ref.removeprefix("inputs.")]
    value = None
    for n, part in enumerate(ref.split(".")):
        match = PATH_PART.fullmatch(part)
        if not match:
            raise invalid_argument(where, f"bad reference {quoted(ref)}: use STEP.field.sub[INDEX]")
        key, indexes = match.groups()
        if n == 0:
            value = results.get(key)
        else:
            # Proto fields only: getattr on anything else would reach Python internals (`__class__`).
            fields = value.DESCRIPTOR.fields_by_name if isinstance(value, Message) else {}
            value = getattr(value, key) if key in fields else None
        if value is None:
            raise invalid_argument(where, f"reference {quoted(ref)} does not resolve in the step outputs: "
                                          f"{quoted(key)} is not a field there")
        for index in re.findall(r"\[(\d+)\]", indexes):
            if isinstance(value, (Message, str, bytes)) or not hasattr(value, "__len__"):
                raise invalid_argument(where, f"reference {quoted(ref)} indexes a field that is not repeated")
            if int(index) >= len(value):
                raise invalid_argument(where, f"reference {quoted(ref)}: index {index} is past the "
                                              f"{len(value)} elements there")
            value = value[int(index)]
    return value


def _resolve(value, results, inputs, where, limits: PipelineLimits = DEFAULT_LIMITS):
    if isinstance(value, str):
        whole = REF.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), results, inputs, where)
        return _interpolate(value, results, inputs, where, limits)
    if isinstance(value, dict):
        return {k: _resolve(v, results, inputs, f"{where}.{k}", limits) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results, inputs, f"{where}[{i}]", limits) for i, v in enumerate(value)]
    return value


def _interpolate(text: str, results, inputs, where, limits: PipelineLimits) -> str:
    """`like ${look.caption}!`: scalar values only, and the text capped as it is built."""
    pieces, size, start = [], 0, 0
    for match in REF.finditer(text):
        value = _lookup(match.group(1), results, inputs, where)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise invalid_argument(where, f"{quoted(match.group(0))} is not text or a number; only a value that "
                                          "is the whole string may be a message, bytes or a list")
        piece = value if isinstance(value, str) else repr(value)
        pieces += [text[start:match.start()], piece]
        size += match.start() - start + len(piece)
        start = match.end()
        if size > limits.max_interpolated_bytes:
            raise resource_exhausted(where, f"interpolation builds more than {limits.max_interpolated_bytes} "
                                            "characters (SYN_PIPELINE_MAX_INTERPOLATED_BYTES)")
    pieces.append(text[start:])
    return "".join(pieces)


def fill(message: Message, values: dict, where: str) -> Message:
    """Set a message's fields from a mapping whose leaves may be messages, bytes or scalars."""
    for key, value in values.items():
        fd = message.DESCRIPTOR.fields_by_name.get(key)
        here = f"{where}.{key}"
        if fd is None:
            raise invalid_argument(here, f"{message.DESCRIPTOR.name} has no field {quoted(key)}")
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
                if value not in fd.enum_type.values_by_name:
                    raise ValueError(f"{quoted(value)} is not one of {', '.join(fd.enum_type.values_by_name)}")
                setattr(message, key, fd.enum_type.values_by_name[value].number)
            else:
                setattr(message, key, value)
        except ServiceError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise invalid_argument(here, f"cannot set this field from the given {_kind(value)}: "
                                         f"{str(exc)[:200]}") from None
    return message


def _kind(value) -> str:
    if isinstance(value, Message):
        return f"{value.DESCRIPTOR.name} message"
    return {str: "text", bytes: "bytes", bool: "boolean", int: "integer", float: "number", dict: "mapping",
            list: "list"}.get(type(value), "value")


def _event(step: str, state: int, **fields) -> gateway_pb2.RunPipelineResponse:
    return gateway_pb2.RunPipelineResponse(step=step, state=state, **fields)


async def run(steps: list[Step], inputs: dict[str, bytes], upstreams: dict[str, Upstream], context,
              limits: PipelineLimits = DEFAULT_LIMITS):
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
                try:
                    values = _resolve(step.request, results, inputs, f"{step.field}.request", limits)
                    request = fill(CALLS[step.call](), values, f"{step.field}.request")
                    response = await call(upstreams[service], method, request, context)
                except ServiceError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a step's failure, never a silently finished call
                    log.exception("pipeline step %s (%s) failed", step.name, step.call, exc_info=exc)
                    raise ServiceError(grpc.StatusCode.INTERNAL, f"step {step.name} failed unexpectedly") from None
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

