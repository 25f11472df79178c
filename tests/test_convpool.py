"""The seed network's blocks as CPU kernels (digits/convpool.py): the same outputs and gradients
as torch's conv2d + max_pool2d, torch's operators wherever a kernel does not apply, and the build."""
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import random_images as _images
from digits import convpool
from digits.models import create_model

CL = torch.channels_last
has_compiler = sys.platform.startswith("linux") and convpool._compiler() is not None
needs_kernel = pytest.mark.skipif(not has_compiler, reason="the kernel is built with a C compiler on Linux")


def _block(c, bias, seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(1, c, 5, bias=bias), nn.MaxPool2d(2)


def _torch_block(conv, pool, images):
    return pool(conv(images))


@needs_kernel
def test_the_kernel_is_built_where_there_is_a_compiler():
    # a compile error would otherwise only show as torch's slower path
    assert convpool.library() is not None


@needs_kernel
@pytest.mark.parametrize("n, c, bias, threads", [(256, 10, True, 2), (3, 8, False, 2), (257, 10, True, 1),
                                                 (1, 20, True, 2)])
def test_forward_and_weight_gradients_are_torchs(n, c, bias, threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        conv, pool = _block(c, bias)
        images = _images(n).contiguous(memory_format=CL)
        assert convpool.fusable(conv, pool, images)
        ours = convpool.conv_then_pool(conv, pool, images)
        theirs = _torch_block(conv, pool, images)
        assert ours.shape == theirs.shape == (n, c, 12, 12) and ours.is_contiguous(memory_format=CL)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
        g = torch.Generator().manual_seed(1)  # a gradient with the ReLU's zeros in it
        grad = torch.randn(theirs.shape, generator=g) * (torch.rand(theirs.shape, generator=g) > 0.5)
        mine = torch.autograd.grad(ours, [p for p in conv.parameters()], grad)
        torchs = torch.autograd.grad(theirs, [p for p in conv.parameters()], grad)
        for a, b in zip(mine, torchs):
            assert a.shape == b.shape
            assert (a - b).abs().max() <= 1e-5 * b.abs().max() + 1e-6  # the same sums in another order
    finally:
        torch.set_num_threads(old)


@needs_kernel
@pytest.mark.parametrize("n, ci, co, bias, threads, input_grad", [
    (256, 10, 20, True, 2, True), (3, 10, 20, False, 2, True), (257, 7, 5, True, 1, True), (2, 32, 3, True, 2, False)])
def test_second_block_forward_and_gradients_are_torchs(n, ci, co, bias, threads, input_grad):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        conv, pool = nn.Conv2d(ci, co, 5, bias=bias), nn.MaxPool2d(2)
        g = torch.Generator().manual_seed(2)
        maps = torch.randn(n, ci, 12, 12, generator=g).relu().contiguous(memory_format=CL)  # ReLU's zeros tie too
        maps.requires_grad_(input_grad)
        assert convpool.fusable(conv, pool, maps) == "second"
        ours, theirs = convpool.conv_then_pool(conv, pool, maps), _torch_block(conv, pool, maps)
        assert ours.shape == theirs.shape == (n, co, 4, 4) and ours.is_contiguous(memory_format=CL)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
        grad = torch.randn(theirs.shape, generator=g) * (torch.rand(theirs.shape, generator=g) > 0.5)
        wrt = [maps] * input_grad + list(conv.parameters())
        for a, b in zip(torch.autograd.grad(ours, wrt, grad), torch.autograd.grad(theirs, wrt, grad)):
            assert a.shape == b.shape
            assert (a - b).abs().max() <= 1e-5 * b.abs().max() + 1e-6
    finally:
        torch.set_num_threads(old)


@needs_kernel
def test_weight_gradients_come_in_the_weights_own_layout():
    # they came in plain layout for channels-last weights: every torchrun process warned "Grad strides
    # do not match bucket view strides" (DDP's buckets follow the weights), and AccumulateGrad copied
    model = create_model("seed").to(memory_format=CL)
    seen = {}
    for name, param in model.named_parameters():
        if param.dim() == 4:
            param.register_hook(lambda g, name=name: seen.update({name: g.stride()}))
    images = _images(8).contiguous(memory_format=CL)
    model(images).sum().backward()
    convs = {name: p.stride() for name, p in model.named_parameters() if p.dim() == 4}
    assert len(convs) == 2 and seen == convs
    assert all(p.is_contiguous(memory_format=CL) for p in model.parameters() if p.dim() == 4)


@needs_kernel
def test_each_window_routes_its_gradient_to_torchs_maximum():
    """A window whose maximum is at a known place: the weight gradient is that place's patch."""
    conv, pool = nn.Conv2d(1, 1, 5, bias=False), nn.MaxPool2d(2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2, 2] = 1.0  # the convolution reads the centre pixel: output = x[r+2, s+2]
    for place in range(4):
        images = torch.zeros(1, 1, 28, 28)
        images[0, 0, 2 + place // 2, 2 + place % 2] = 5.0  # in output window (0, 0)
        images[0, 0, 2, 2] += 1e-3  # a lower second value, to be passed over
        out = convpool.conv_then_pool(conv, pool, images)
        assert out[0, 0, 0, 0] == 5.0 + (1e-3 if place == 0 else 0.0)
        grad = torch.zeros_like(out)
        grad[0, 0, 0, 0] = 1.0
        (dw,) = torch.autograd.grad(out, [conv.weight], grad)
        (expected,) = torch.autograd.grad(_torch_block(conv, pool, images), [conv.weight], grad)
        assert torch.equal(dw, expected)  # the 5x5 patch at the maximum's place
        assert dw[0, 0, 2, 2] > 1.0


@needs_kernel
def test_tied_maxima_route_the_gradient_to_the_first_as_torch():
    """Windows whose four values are equal but whose patches differ: the gradient must go where
    torch sends it (the first of the four), for both blocks' weights and the second's input."""
    conv, pool = nn.Conv2d(1, 1, 5, bias=False), nn.MaxPool2d(2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2, 2] = 1.0  # output (r, s) = x[r+2, s+2]: equal outputs, different patches
    images = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    images[:, 0, 2:26, 2:26] = images[:, 0, 2:26:2, 2:26:2].repeat_interleave(2, 1).repeat_interleave(2, 2)
    grad = torch.randn(2, 1, 12, 12)
    (ours,) = torch.autograd.grad(convpool.conv_then_pool(conv, pool, images), [conv.weight], grad)
    (theirs,) = torch.autograd.grad(_torch_block(conv, pool, images), [conv.weight], grad)
    assert torch.allclose(ours, theirs, atol=1e-4) and not torch.allclose(ours, torch.zeros_like(ours))

    conv2 = nn.Conv2d(3, 4, 5)
    with torch.no_grad():
        conv2.weight.zero_()
        conv2.weight[:, :, 2, 2] = 1.0
    maps = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    maps[:, :, 2:10, 2:10] = maps[:, :, 2:10:2, 2:10:2].repeat_interleave(2, 2).repeat_interleave(2, 3)
    maps = maps.contiguous(memory_format=CL).requires_grad_()
    grad = torch.randn(2, 4, 4, 4)
    assert convpool.fusable(conv2, pool, maps) == "second"
    ours = torch.autograd.grad(convpool.conv_then_pool(conv2, pool, maps), [maps, conv2.weight], grad)
    theirs = torch.autograd.grad(_torch_block(conv2, pool, maps), [maps, conv2.weight], grad)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-4)


@needs_kernel
def test_what_the_kernels_cannot_serve_runs_as_torch():
    conv, pool = _block(10, True)
    images = _images(2)
    # a weight for 3 input channels on 1-channel images: torch's error, not the kernel reading past it
    with pytest.raises(RuntimeError, match="channels"):
        convpool.conv_then_pool(nn.Conv2d(3, 10, 5), pool, images)
    maps = torch.randn(2, 10, 12, 12).contiguous(memory_format=CL)
    with pytest.raises(RuntimeError, match="channels"):
        convpool.conv_then_pool(nn.Conv2d(5, 20, 5), pool, maps)
    # hooks and subclasses: the modules themselves are called
    calls = []
    handle = conv.register_forward_hook(lambda *args: calls.append(1))
    assert convpool.fusable(conv, pool, images) is None
    convpool.conv_then_pool(conv, pool, images)
    handle.remove()
    assert calls == [1] and convpool.fusable(conv, pool, images) == "first"

    class Doubled(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    doubled = Doubled(1, 10, 5)
    assert convpool.fusable(doubled, pool, images) is None
    # second derivatives: torch's operators give them; the kernels refuse rather than drop them
    w = conv.weight
    (g,) = torch.autograd.grad(convpool.conv_then_pool(conv, pool, images).pow(2).sum(), [w], create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()
    # torch.func's transforms and forward-mode AD: torch's operators
    from torch.func import functional_call, grad

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool = conv, pool

        def forward(self, x):
            return convpool.conv_then_pool(self.conv, self.pool, x)

    block = Block()
    params = {k: v.detach() for k, v in block.named_parameters()}
    per_transform = grad(lambda p: functional_call(block, p, (images,)).sum())(params)["conv.weight"]
    assert torch.allclose(per_transform, torch.autograd.grad(pool(conv(images)).sum(), [conv.weight])[0], atol=1e-4)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        assert convpool.fusable(conv, pool, images) is None


@needs_kernel
@pytest.mark.parametrize("default", ["float64", "meta"])
def test_the_kernels_work_whatever_torchs_default_dtype_and_device(default):
    conv, pool = _block(10, True)
    images = _images(4)
    expected = _torch_block(conv, pool, images)
    saved = torch.get_default_dtype()
    if default == "float64":
        torch.set_default_dtype(torch.float64)
    try:  # torch.device as a context: set_default_device would leave a function mode behind
        with torch.device("meta" if default == "meta" else "cpu"):
            assert convpool.fusable(conv, pool, images) == "first"
            out = convpool.conv_then_pool(conv, pool, images)
            (dw,) = torch.autograd.grad(out.sum(), [conv.weight])
    finally:
        torch.set_default_dtype(saved)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(dw, torch.autograd.grad(expected.sum(), [conv.weight])[0], atol=1e-3)


@needs_kernel
def test_ties_and_nans_as_torch():
    conv, pool = _block(10, True)
    images = _images(4)
    images[1, 0, 20, 20] = float("nan")
    ours, theirs = convpool.conv_then_pool(conv, pool, images), _torch_block(conv, pool, images)
    assert torch.equal(ours.isnan(), theirs.isnan()) and ours.isnan().any()
    assert torch.allclose(ours.nan_to_num(), theirs.nan_to_num(), atol=1e-5)


@needs_kernel
def test_the_same_result_every_time():
    conv, pool = _block(10, True)
    images, grad = _images(64), torch.randn(64, 10, 12, 12)
    runs = [torch.autograd.grad(convpool.conv_then_pool(conv, pool, images), [conv.weight], grad)[0] for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])  # thread order fixed: no timing in the sums


@needs_kernel
def test_the_seed_network_trains_as_with_torchs_operators(monkeypatch):
    def train(fused):
        torch.manual_seed(0)
        model = create_model("seed").to(memory_format=CL)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            images = _images(64, int(torch.randint(0, 99, (1,), generator=g)))
            labels = torch.randint(0, 10, (64,), generator=g)
            optimizer.zero_grad()
            F.cross_entropy(model(images.contiguous(memory_format=CL)), labels).backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    fused = train(True)
    calls = []

    def spy(name):
        real = getattr(convpool, name)
        return type(name, (), {"apply": staticmethod(lambda *args: calls.append(name) or real.apply(*args))})

    with monkeypatch.context() as m:
        for name in ("_FirstBlock", "_SecondBlock"):
            m.setattr(convpool, name, spy(name))
        create_model("seed").to(memory_format=CL)(_images(2))  # the seed network runs both blocks as kernels
        assert calls == ["_FirstBlock", "_SecondBlock"]
        create_model("fast")(_images(2))  # the fast one its first (its second convolution is 3x3)
        assert calls[2:] == ["_FirstBlock"]
    previous = convpool.set_enabled(False)
    try:
        assert convpool.fusable(*_block(10, True), _images(2)) is None
        plain = train(False)
    finally:
        convpool.set_enabled(previous)
    assert convpool.fusable(*_block(10, True), _images(2)) == "first"
    assert not torch.equal(fused, plain)  # the kernel did run (its sums are in another order)
    assert torch.allclose(fused, plain, atol=1e-5)


@needs_kernel
def test_whatever_the_kernel_does_not_cover_runs_as_torch():
    conv, pool = _block(10, True)
    images = _images(2)
    assert convpool.fusable(conv, pool, images)
    assert not convpool.fusable(conv, pool, images.double())
    assert not convpool.fusable(conv, pool, torch.randn(2, 1, 32, 32))
    assert not convpool.fusable(conv, pool, torch.randn(0, 1, 28, 28))
    assert not convpool.fusable(conv, pool, images[:, :, :, ::1].transpose(2, 3))  # not contiguous
    assert not convpool.fusable(nn.Conv2d(1, 0, 5), pool, images)  # torch's error for it, not an empty output
    assert not convpool.fusable(nn.Conv2d(1, 10, 5, padding=2), pool, images)
    assert not convpool.fusable(nn.Conv2d(1, 10, 3), pool, images)
    assert not convpool.fusable(nn.Conv2d(1, 10, 5, stride=2), pool, images)
    assert not convpool.fusable(conv, nn.MaxPool2d(2, ceil_mode=True), images)
    assert not convpool.fusable(conv, nn.MaxPool2d(3), images)
    assert not convpool.fusable(conv, nn.Identity(), images)
    maps = torch.randn(2, 10, 12, 12)
    assert convpool.fusable(nn.Conv2d(10, 20, 5), pool, maps.contiguous(memory_format=CL)) == "second"
    assert not convpool.fusable(nn.Conv2d(10, 20, 5), pool, maps)  # the second block takes channels last only
    assert not convpool.fusable(nn.Conv2d(33, 20, 5), pool, torch.randn(2, 33, 12, 12).contiguous(memory_format=CL))
    assert not convpool.fusable(nn.Conv2d(10, 20, 3), pool, maps.contiguous(memory_format=CL))
    with torch.autocast("cpu", torch.bfloat16):
        assert not convpool.fusable(conv, pool, images)
    # an input that needs its own gradient (saliency): torch's path, which gives it one
    x = images.clone().requires_grad_()
    assert not convpool.fusable(conv, pool, x)
    (gx,) = torch.autograd.grad(convpool.conv_then_pool(conv, pool, x).sum(), [x])
    assert gx.abs().sum() > 0


@needs_kernel
def test_tracing_and_export_see_torchs_operators(tmp_path):
    model = create_model("seed").eval()
    images = _images(2)
    traced = torch.jit.trace(model, images)
    kinds = {node.kind() for node in traced.graph.nodes()}
    assert "prim::PythonOp" not in kinds  # a custom Function would trace as one and not export
    with torch.no_grad():
        assert torch.allclose(traced(images), model(images), atol=1e-5)
    fast = create_model("fast").eval()  # scripting compiles torch's operators only
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(fast)(images), fast(images), atol=1e-5)


def test_without_a_compiler_torchs_operators_run(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(convpool, "_library", None)
    monkeypatch.setattr(convpool, "_tried", False)
    monkeypatch.setattr(convpool.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setenv("CC", "no-such-compiler")
    conv, pool = _block(10, True)
    assert convpool.library() is None and not convpool.fusable(conv, pool, _images(2))
    assert torch.equal(convpool.conv_then_pool(conv, pool, _images(2)), _torch_block(conv, pool, _images(2)))


def test_a_failing_compile_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(convpool.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setenv("CC", shutil.which("false") or "false")
    assert convpool._build() is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_digits_no_kernel_turns_it_off(monkeypatch):
    monkeypatch.setenv("DIGITS_NO_KERNEL", "1")
    assert convpool._build() is None


@needs_kernel
def test_built_once_then_loaded_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = convpool._build()
    built = list((tmp_path / "digits").glob("convpool-*.so"))
    assert first is not None and len(built) == 1
    monkeypatch.setattr(convpool, "_compile", lambda *args: pytest.fail("compiled a second time"))
    assert convpool._build() is not None
    assert sorted(p.suffix for p in (tmp_path / "digits").glob("*")) == [".sha256", ".so"]


@needs_kernel
def test_a_damaged_library_in_the_cache_is_built_again(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert convpool._build() is not None
    (built,) = (tmp_path / "digits").glob("convpool-*.so")
    size = built.stat().st_size
    damaged = built.with_suffix(".damaged")  # a new file renamed over it: the loaded one stays as it was
    damaged.write_bytes(built.read_bytes()[: size // 3])  # loading this one would kill the process (SIGBUS)
    damaged.replace(built)
    assert convpool._build() is not None
    assert built.stat().st_size == size


@needs_kernel
def test_a_folder_others_can_write_to_is_not_loaded_from(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    (shared / "digits").mkdir(mode=0o777)
    (shared / "digits").chmod(0o777)  # as /tmp/digits-<uid> would be if someone else made it
    monkeypatch.setattr(convpool.tempfile, "gettempdir", lambda: str(shared))
    os_folder = shared / f"digits-{__import__('os').getuid()}"
    os_folder.mkdir()
    os_folder.chmod(0o777)
    assert convpool._build() is None
    assert not list(shared.rglob("*.so"))


@needs_kernel
def test_a_compiler_without_openmp_builds_a_one_thread_library(monkeypatch, tmp_path):
    cc = tmp_path / "cc-without-openmp"
    cc.write_text(f'#!/bin/sh\ncase "$*" in *-fopenmp*) exit 1;; esac\nexec {convpool._compiler()[0]} "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(cc))
    single = convpool._build()
    assert single is not None
    monkeypatch.setattr(convpool, "_library", single)
    conv, pool = _block(10, True)
    maps = torch.randn(64, 10, 12, 12).relu().contiguous(memory_format=CL).requires_grad_()
    conv2 = nn.Conv2d(10, 20, 5)
    images = _images(64)
    for block, x in ((conv, images), (conv2, maps)):
        ours, theirs = convpool.conv_then_pool(block, pool, x), _torch_block(block, pool, x)
        assert torch.allclose(ours, theirs, atol=1e-5)
        wrt = [block.weight, block.bias]
        for a, b in zip(torch.autograd.grad(ours.sum(), wrt), torch.autograd.grad(theirs.sum(), wrt)):
            assert (a - b).abs().max() <= 1e-4 * b.abs().max()  # one thread's long float sums


def test_a_relative_xdg_cache_home_is_ignored_for_the_kernels_too(monkeypatch, tmp_path):
    """The kernels were cached in a relative $XDG_CACHE_HOME as it stood (the XDG spec says ignore
    it), in whatever folder a run started from; they now share download.py's cache folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    folders = []
    monkeypatch.setattr(convpool, "_load", lambda folder, *args: folders.append(folder))
    monkeypatch.setattr(convpool, "_compiler", lambda: ["cc"])
    monkeypatch.delenv("DIGITS_NO_KERNEL", raising=False)
    if not convpool.sys.platform.startswith("linux"):
        pytest.skip("the kernels are built on Linux only")
    assert convpool._build() is None  # (nothing loaded: every candidate folder is tried)
    assert folders[0] == tmp_path / "home" / ".cache" / "digits"
