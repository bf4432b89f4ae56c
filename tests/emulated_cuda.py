"""An emulated CUDA device for CPU machines: memory, streams, events and a clock that fail the way a GPU
fails, so that the GPU path's ordering mistakes show up in CPU tests.

What it models (CUDA's rules as torch exposes them; torch's pool streams are non-blocking,
c10/cuda/CUDAStream.cpp, so nothing orders them with the default stream but explicit waits):

- Device memory is a tensor type, ``DeviceTensor``; plain tensors are host memory. Torch ops on device
  tensors give device tensors; ``.cpu()`` / ``.item()`` / ``.tolist()`` / ``float()`` / ``.to("cpu")`` copy
  to the host (plain tensors) and ``.numpy()`` raises as it does on a CUDA tensor.
- Every access happens on a stream at a position (stream, seq): torch ops on the thread's current stream
  (``torch.cuda.stream(s)``), TensorRT launches and device copies on the stream they are queued on. The
  host reads device memory on the current stream and blocks on it (as cudaMemcpy does).
- A read on stream R of memory written on another stream W at seq w is ordered only if R waited for W at
  or after w (``R.wait_stream(W)``, ``R.wait_event(e)`` / ``e.wait(R)`` after ``e.record(W)``) or the host
  synchronized W after it (``W.synchronize()``, ``e.synchronize()``, ``torch.cuda.synchronize()``, a host
  read on W). A read that is not ordered is a race: it sees NaN (poison) and is recorded in ``races``.
  So is a write that is not ordered after another stream's read of the same memory (write after read).
- Work itself runs at once on the host (results are exact when the order is right). Time is simulated:
  each stream has a busy-until time; a launch of ``duration`` seconds starts when its stream and the host
  are free; the host waits only where it synchronizes. ``clock()`` is the host's time (install it as
  ``time.perf_counter`` to check that a benchmark synchronizes before it reads the clock).

Not modeled: the caching allocator handing memory freed on one stream to another (``record_stream`` is
accepted and checked for its argument only), kernels' own run time (only ``duration`` of launches).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable

import torch
from torch.utils._pytree import tree_flatten

ACTIVE: EmulatedGPU | None = None  # the device DeviceTensors belong to while a test runs
DEVICE = torch.device("cpu", 0)  # the emulated GPU as torch sees it: `.to(DEVICE)` stays on the device
_real_perf_counter = time.perf_counter

# Tensor methods that read no data (metadata, addresses)
_NO_DATA = {"data_ptr", "untyped_storage", "storage_offset", "stride", "size", "dim", "numel", "element_size",
            "is_contiguous", "nelement", "ndimension", "__len__", "get_device", "is_floating_point", "is_complex",
            "requires_grad_", "__hash__", "is_pinned", "is_shared", "__dlpack_device__"}
# reads by the host (a device -> host copy that blocks on the current stream)
_HOST_READS = {"cpu", "item", "tolist", "__float__", "__int__", "__index__", "__bool__", "__complex__", "__repr__",
               "__str__", "__format__"}


class EmulatedStream:
    """torch.cuda.Stream's interface on the emulated device."""

    def __init__(self, gpu: EmulatedGPU, handle: int):
        self.gpu, self.cuda_stream, self.device = gpu, handle, DEVICE
        self.seq = 0  # position of the last work queued on it
        self.waits: dict[int, int] = {}  # stream handle -> the position of that stream this one waited for
        self.busy_until = 0.0  # simulated time its queued work ends

    def __repr__(self) -> str:
        return f"<emulated stream {self.cuda_stream:#x}>"

    def wait_stream(self, other: EmulatedStream) -> None:
        self.gpu.wait(self, other, other.seq, other.busy_until)

    def wait_event(self, event: EmulatedEvent) -> None:
        event.wait(self)

    def record_event(self, event: EmulatedEvent | None = None) -> EmulatedEvent:
        event = event or EmulatedEvent()
        event.record(self)
        return event

    def synchronize(self) -> None:
        self.gpu.host_waits_for(self)

    def query(self) -> bool:
        return self.busy_until <= self.gpu.clock()


class StreamFactory:
    """torch.cuda.Stream while emulated: a type (code annotates with it), whose calls make emulated streams."""

    def __new__(cls, device=None, priority: int = 0, **kwargs) -> EmulatedStream:
        return ACTIVE.new_stream()


class EmulatedEvent:
    """torch.cuda.Event's interface: a position on a stream."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        self.stream: EmulatedStream | None = None
        self.seq, self.time = 0, 0.0

    def record(self, stream: EmulatedStream | None = None) -> None:
        stream = stream or ACTIVE.current_stream()
        self.stream, self.seq, self.time = stream, stream.seq, max(stream.busy_until, ACTIVE.clock())

    def wait(self, stream: EmulatedStream | None = None) -> None:
        if self.stream is not None:
            ACTIVE.wait(stream or ACTIVE.current_stream(), self.stream, self.seq, self.time)

    def synchronize(self) -> None:
        if self.stream is not None:
            ACTIVE.host_waits_for(self.stream, self.seq, self.time)

    def query(self) -> bool:
        return self.stream is None or self.time <= ACTIVE.clock()

    def elapsed_time(self, end: EmulatedEvent) -> float:
        return 1000.0 * (end.time - self.time)


class DeviceTensor(torch.Tensor):
    """A tensor in emulated device memory (a plain CPU tensor underneath)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        gpu = ACTIVE
        if gpu is None or gpu.internal or name == "__get__" or name in _NO_DATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if name in ("numpy", "__array__"):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            "to host memory first.")
        if name in _HOST_READS or (name == "to" and _to_host(args, kwargs)):
            return gpu.host_read(func, args, kwargs)
        return gpu.torch_op(func, args, kwargs)


    def record_stream(self, stream) -> None:
        """Accepted (the caching allocator is not modeled), but only with a stream of this device."""
        if not isinstance(stream, EmulatedStream):
            raise TypeError(f"record_stream() expects a CUDA stream, got {type(stream).__name__}")


def _to_host(args, kwargs) -> bool:
    """Whether a ``.to(...)`` call names the host (cpu without the emulated device's index)."""
    for a in (*args[1:], kwargs.get("device")):
        if isinstance(a, (str, torch.device)):
            device = torch.device(a)
            return device.type == "cpu" and device.index is None
    return False


def _storage_key(t: torch.Tensor) -> int:
    with torch._C.DisableTorchFunctionSubclass():
        return t.untyped_storage().data_ptr()


def _plain(t: torch.Tensor) -> torch.Tensor:
    with torch._C.DisableTorchFunctionSubclass():
        return t.as_subclass(torch.Tensor)


def poison_like(t: torch.Tensor) -> torch.Tensor:
    """What an unordered read sees: NaN for floats, the largest value for integers, True for bools."""
    with torch._C.DisableTorchFunctionSubclass():
        if t.dtype.is_floating_point:
            return torch.full_like(t, float("nan"))
        if t.dtype == torch.bool:
            return torch.ones_like(t)
        return torch.full_like(t, torch.iinfo(t.dtype).max)


class EmulatedGPU:
    """The device's state: streams, allocations, who wrote and read which memory where, the clock."""

    def __init__(self):
        self._lock = threading.RLock()
        self._local = threading.local()
        self.default_stream = EmulatedStream(self, 0)
        self.streams = {0: self.default_stream}
        self.allocations: list[tuple[int, int, torch.Tensor]] = []  # (start, end, backing buffer)
        self.writes: dict[int, tuple[int, int]] = {}  # storage -> (stream handle, seq) of its last write
        self.reads: dict[int, dict[int, int]] = {}  # storage -> {stream handle: seq of its last read}
        self.completed: dict[int, int] = {}  # stream handle -> position the host has seen finish
        self.races: list[str] = []
        self.offset = 0.0  # simulated seconds the host spent waiting for the device
        self.launches = 0

    # -- streams and the host -------------------------------------------------------------------------
    @property
    def internal(self) -> bool:
        return getattr(self._local, "internal", False)

    @contextlib.contextmanager
    def inside(self):
        """The emulator's own tensor work: not device work of the program under test."""
        previous = self.internal
        self._local.internal = True
        try:
            with torch._C.DisableTorchFunctionSubclass():
                yield
        finally:
            self._local.internal = previous

    def clock(self) -> float:
        return _real_perf_counter() + self.offset

    def new_stream(self) -> EmulatedStream:
        with self._lock:
            stream = EmulatedStream(self, 0x1000 + len(self.streams))
            self.streams[stream.cuda_stream] = stream
            return stream

    def stream_by_handle(self, handle: int) -> EmulatedStream:
        if handle not in self.streams:
            raise RuntimeError(f"CUDA error 400: invalid resource handle (stream {handle!r})")
        return self.streams[handle]

    def current_stream(self) -> EmulatedStream:
        return getattr(self._local, "stream", None) or self.default_stream

    @contextlib.contextmanager
    def use(self, stream: EmulatedStream | None):
        """torch.cuda.stream(stream): the thread's current stream for the block."""
        if stream is None:
            yield
            return
        if not isinstance(stream, EmulatedStream):
            raise TypeError(f"expected a CUDA stream, got {type(stream).__name__}")
        previous = getattr(self._local, "stream", None)
        self._local.stream = stream
        try:
            yield
        finally:
            self._local.stream = previous

    def wait(self, waiter: EmulatedStream, other: EmulatedStream, seq: int, busy_until: float) -> None:
        with self._lock:
            waiter.waits[other.cuda_stream] = max(waiter.waits.get(other.cuda_stream, 0), seq)
            waiter.busy_until = max(waiter.busy_until, busy_until)

    def host_waits_for(self, stream: EmulatedStream | None = None, seq: int | None = None,
                       busy_until: float | None = None) -> None:
        """The host blocks until ``stream`` (every stream: None) has run its work up to ``seq``."""
        with self._lock:
            for s in ([stream] if stream is not None else list(self.streams.values())):
                position = s.seq if seq is None else seq
                self.completed[s.cuda_stream] = max(self.completed.get(s.cuda_stream, 0), position)
                end = s.busy_until if busy_until is None else busy_until
                self.offset += max(0.0, end - self.clock())

    # -- memory --------------------------------------------------------------------------------------------
    def empty(self, shape, dtype: torch.dtype) -> DeviceTensor:
        """Fresh device memory (256-byte aligned, as cudaMalloc's is), holding poison until written."""
        with self.inside():
            count = 1
            for d in shape:
                count *= int(d)
            nbytes = max(count * torch.empty((), dtype=dtype).element_size(), 1)
            raw = torch.empty(nbytes + 256, dtype=torch.uint8)
            offset = (-raw.data_ptr()) % 256
            view = raw[offset: offset + nbytes].view(dtype)[:count].view(tuple(int(d) for d in shape))
            view.copy_(poison_like(view))
            with self._lock:
                self.allocations.append((view.data_ptr(), view.data_ptr() + nbytes, raw))
                key = raw.untyped_storage().data_ptr()  # the host allocator may reuse a freed tensor's address:
                self.writes.pop(key, None)  # new memory has no history
                self.reads.pop(key, None)
            return view.as_subclass(DeviceTensor)

    def owns(self, ptr: int, nbytes: int = 1) -> bool:
        return any(start <= ptr and ptr + nbytes <= end for start, end, _ in self.allocations)

    def tensor_at(self, ptr: int, shape, dtype: torch.dtype) -> DeviceTensor:
        """The device memory at ``ptr`` seen as a tensor (what TensorRT reads or writes at a bound address)."""
        with self.inside():
            for start, end, raw in self.allocations:
                if start <= ptr < end:
                    count = 1
                    for d in shape:
                        count *= int(d)
                    offset = ptr - raw.data_ptr()
                    size = count * torch.empty((), dtype=dtype).element_size()
                    return raw[offset: offset + size].view(dtype).view(tuple(shape)).as_subclass(DeviceTensor)
        raise AssertionError(f"{ptr:#x} is not device memory")

    # -- ordered access ----------------------------------------------------------------------------------
    def _ordered(self, reader: EmulatedStream, writer: tuple[int, int]) -> bool:
        handle, seq = writer
        return (handle == reader.cuda_stream or reader.waits.get(handle, 0) >= seq
                or self.completed.get(handle, 0) >= seq)

    def _read(self, stream: EmulatedStream, t: torch.Tensor, seq: int, what: str) -> torch.Tensor:
        """``t`` as ``stream`` sees it at ``seq``: itself, or poison when its last write is not ordered before."""
        key = _storage_key(t)
        writer = self.writes.get(key)
        self.reads.setdefault(key, {})[stream.cuda_stream] = seq
        if writer is None or self._ordered(stream, writer):
            return t
        self.races.append(f"{what} on stream {stream.cuda_stream:#x} reads memory written on stream {writer[0]:#x} "
                          f"(at {writer[1]}) without waiting for it")
        return poison_like(t)

    def _write(self, stream: EmulatedStream, t: torch.Tensor, seq: int, what: str, fresh: bool = False) -> None:
        key = _storage_key(t)
        readers = {} if fresh else self.reads.get(key, {})
        for handle, read_seq in readers.items():
            if handle != stream.cuda_stream and not self._ordered(stream, (handle, read_seq)):
                self.races.append(f"{what} on stream {stream.cuda_stream:#x} overwrites memory that stream "
                                  f"{handle:#x} reads (at {read_seq}) without waiting for that read")
        self.writes[key] = (stream.cuda_stream, seq)
        self.reads[key] = {}

    def launch(self, stream: EmulatedStream, reads: dict[str, torch.Tensor], writes: list[torch.Tensor],
               run: Callable[[dict[str, torch.Tensor]], None], duration: float = 0.0, what: str = "a launch") -> None:
        """Queued device work on ``stream`` (a TensorRT launch, a copy): ``run`` gets the inputs as the stream sees
        them and fills ``writes``; the stream is busy ``duration`` simulated seconds."""
        with self._lock:
            stream.seq += 1
            seen = {n: self._read(stream, t, stream.seq, what) for n, t in reads.items()}
            with self.inside():
                run(seen)
            for t in writes:
                self._write(stream, t, stream.seq, what)
            stream.busy_until = max(stream.busy_until, self.clock()) + duration
            self.launches += 1

    def torch_op(self, func, args, kwargs):
        """A torch op on device tensors, on the current stream, after the work queued there."""
        with self._lock:
            stream = self.current_stream()
            stream.seq += 1
            name = getattr(func, "__name__", repr(func))
            flat, _ = tree_flatten((args, kwargs))
            inputs = {id(t): t for t in flat if isinstance(t, DeviceTensor)}
            seen = {i: self._read(stream, t, stream.seq, f"torch {name}") for i, t in inputs.items()}
            swap = lambda x: seen.get(id(x), x) if isinstance(x, DeviceTensor) else x
            args2 = tuple(swap(a) for a in args)
            kwargs2 = {k: swap(v) for k, v in kwargs.items()}
            with self.inside():
                out = func(*args2, **kwargs2)
            input_keys = {_storage_key(t) for t in inputs.values()}
            mutated = name.endswith("_") or name.startswith("__i") or name == "__setitem__"
            if mutated and args and isinstance(args[0], torch.Tensor):
                self._write(stream, args[0], stream.seq, f"torch {name}")
            if isinstance(kwargs.get("out"), torch.Tensor):
                self._write(stream, kwargs["out"], stream.seq, f"torch {name}")
            out = _wrap(out)
            for t in tree_flatten(out)[0]:
                if isinstance(t, DeviceTensor) and _storage_key(t) not in input_keys:  # new memory, not a view
                    self._write(stream, t, stream.seq, f"torch {name}", fresh=True)
            stream.busy_until = max(stream.busy_until, self.clock())
            return out

    def host_read(self, func, args, kwargs):
        """A device -> host copy on the current stream: the host waits for that stream, then reads."""
        with self._lock:
            stream = self.current_stream()
            self.host_waits_for(stream)
            seen = self._read(stream, args[0], stream.seq, f"the host's {getattr(func, '__name__', func)}")
            with self.inside():
                value = _plain(seen).clone()
                return func(value, *args[1:], **kwargs)

    def assert_no_races(self) -> None:
        assert not self.races, "unordered device memory accesses:\n" + "\n".join(self.races[:10])


def _wrap(out):
    """Tensors out of an op on device tensors are device tensors."""
    if isinstance(out, torch.Tensor) and not isinstance(out, DeviceTensor):
        with torch._C.DisableTorchFunctionSubclass():
            return out.as_subclass(DeviceTensor)
    if isinstance(out, (tuple, list)):
        return type(out)(_wrap(o) for o in out) if not hasattr(out, "_fields") else type(out)(*(_wrap(o) for o in out))
    return out


def install_cuda(monkeypatch, gpu: EmulatedGPU | None = None, capability: tuple[int, int] = (9, 0),
                 name: str = "Emulated GPU", memory_gib: int = 80) -> EmulatedGPU:
    """For the rest of the test: the toolkit sees a GPU (tcpade_trt.engines.gpu) and torch.cuda's stream and
    event API works on the emulated one. torch itself still believes there is no GPU (its internals would
    otherwise reach for CUDA's random state and kernels)."""
    from tcpade_trt.engines import gpu as toolkit_gpu

    gpu = gpu or EmulatedGPU()
    monkeypatch.setattr(toolkit_gpu, "available", lambda: True)
    monkeypatch.setattr(toolkit_gpu, "capability", lambda: capability)
    monkeypatch.setattr(toolkit_gpu, "identity", lambda: {"gpu": name,
                                                          "compute_capability": f"{capability[0]}.{capability[1]}"})
    monkeypatch.setattr(toolkit_gpu, "memory_bytes", lambda: memory_gib << 30)
    monkeypatch.setattr(toolkit_gpu, "peak_allocated_bytes", lambda: 0)
    monkeypatch.setattr(toolkit_gpu, "torch_device", lambda: DEVICE)  # a model "on the GPU": host memory
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "Stream", StreamFactory)
    monkeypatch.setattr(cuda, "Event", EmulatedEvent)
    monkeypatch.setattr(cuda, "current_stream", lambda device=None: gpu.current_stream())
    monkeypatch.setattr(cuda, "default_stream", lambda device=None: gpu.default_stream)
    monkeypatch.setattr(cuda, "stream", gpu.use)
    monkeypatch.setattr(cuda, "synchronize", lambda device=None: gpu.host_waits_for())
    monkeypatch.setattr(sys.modules[__name__], "ACTIVE", gpu)  # undone with the rest after the test
    return gpu
