"""Lab 2's claims that the course's code holds (docs/claims/lab2_cuda_kernels.yml).

The sizes the prose names (the checks' cases, the access pictures' launches, the speed
check's defaults), and what the master's kernels do per element, counted by the access
checker on the CUDA simulator: its kernels are taken from its cells and run here.
"""

import ast
import contextlib
import inspect

import nbformat
import numpy as np
import pytest

from course_utils import cudasim, profiles

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from numba import cuda, float32  # noqa: E402

from course_utils.checks import cuda as cc  # noqa: E402
from course_utils.gpu import sanitizer  # noqa: E402
from course_utils.gpu.kernels import memory  # noqa: E402
from tests.conftest import REPO  # noqa: E402

MASTER = REPO / "labs" / "solutions" / "lab2_cuda_kernels.ipynb"
PROFILE_THREADS = sorted({profiles.sizes(p, "lab2_cuda_kernels")["threads"]
                          for p in ("quick", "full")})
needs_simulator = pytest.mark.skipif(not cudasim.on_simulator(),
                                     reason="the access checker watches the simulator")


@pytest.fixture(scope="module")
def master():
    """The master's kernels (and TILE), defined by running their cells."""
    namespace = {"cuda": cuda, "float32": float32, "np": np}
    for cell in nbformat.read(MASTER, as_version=4).cells:
        if cell.cell_type == "code" and "@cuda.jit" in cell.source:
            exec(compile(cell.source, str(MASTER), "exec"), namespace)
    namespace["sources"] = {name: cell.source for cell in nbformat.read(MASTER, as_version=4)
                            .cells for name in ("sgd_momentum", "blur")
                            if f"def {name}(" in cell.source}
    return namespace


@pytest.fixture
def launches(monkeypatch):
    """Every launch the access checker records from here on (the pictures' launches)."""
    seen = []
    real = sanitizer.watch

    @contextlib.contextmanager
    def spy():
        with real() as log:
            yield log
        seen.extend(log.launches)

    monkeypatch.setattr(sanitizer, "watch", spy)
    return seen


def per_element(launch, array: str, *, write: bool) -> set[int]:
    """How many times the threads accessed each element of a global array, as a set."""
    return {sum(a.write == write for a in accesses)
            for _, _, accesses in launch.arrays[array].elements()}


@pytest.mark.parametrize("threads", PROFILE_THREADS)
def test_the_sgd_check_runs_the_three_cases_of_the_prose(threads):
    """(a) one element with a whole block; (b) 37 elements, one thread each, the last block
    partly idle; (c) about ten elements per thread with only 2 blocks."""
    (n_a, blocks_a), (n_b, blocks_b), (n_c, blocks_c) = cc.sgd_cases(threads)
    assert (n_a, blocks_a) == (1, 1)
    assert n_b == 37 and (blocks_b - 1) * threads < 37 < blocks_b * threads
    assert blocks_c == 2 and round(n_c / (blocks_c * threads)) == 10


def test_the_checks_sizes_and_the_speed_checks_defaults():
    """Blur images of 7 x 13 and 33 x 17; linear layers (M, K, N) = (17, 33, 9) and
    (5, 3, 20); the speed check wants 3x on 2048 x 2048 operands in both profiles."""
    assert cc.BLUR_SHAPES == ((7, 13), (33, 17))
    assert cc.MATMUL_SHAPES == ((17, 33, 9), (5, 3, 20))
    for name in ("quick", "full"):
        lab = profiles.sizes(name, "lab2_cuda_kernels")
        assert lab["min_speedup"] == 3.0 and lab["speed_n"] == 2048
    defaults = inspect.signature(cc.check_linear_speed).parameters
    assert defaults["min_speedup"].default == 3.0 and defaults["n"].default == 2048


def test_lesson_08s_register_blocked_kernel_computes_8_by_8_outputs_per_thread():
    bm, bn, _, tm, tn = memory.REGISTER_BLOCKED_TILES[memory.DEFAULT_TILE["register_blocked"]]
    launch = memory.matmul_launch(2048, 2048, 2048)  # the default variant: register-blocked
    assert (tm, tn) == (8, 8) and bm * bn == tm * tn * np.prod(launch.threads)


def test_sgd_momentum_does_4_flops_per_element(master):
    """Per element: v = momentum * v + g, w -= lr * v: two multiplies, two additions."""
    tree = ast.parse(master["sources"]["sgd_momentum"])
    (loop,) = [node for node in ast.walk(tree) if isinstance(node, ast.For)]
    flops = [node for stmt in loop.body for node in ast.walk(stmt)
             if isinstance(node, ast.BinOp | ast.AugAssign)]
    assert len(flops) == 4


@needs_simulator
def test_sgd_momentum_reads_12_bytes_and_writes_8_per_element(master):
    n = 11
    arrays = [cuda.to_device(np.full(n, 0.5, np.float32)) for _ in range(3)]
    with sanitizer.watch() as log:
        master["sgd_momentum"][2, 4](np.float32(0.25), np.float32(0.5), *arrays)
    launch = log.last
    for name in ("w", "g", "v"):
        assert per_element(launch, name, write=False) == {1}, name  # 3 x 4 bytes read
    assert per_element(launch, "w", write=True) == per_element(launch, "v", write=True) == {1}
    assert per_element(launch, "g", write=True) == {0}  # 2 x 4 bytes written
    assert all(a.dtype == np.float32 for a in arrays)


@needs_simulator
def test_the_blur_reads_each_pixel_9_times_and_writes_it_once(master):
    """A 3 x 3 stencil with clamped edges: every pixel, edges included, is read 9 times;
    the compulsory traffic is one read and one write of 4 bytes per pixel."""
    img = np.random.default_rng(0).random((6, 7), dtype=np.float32)
    out = cuda.device_array(img.shape, np.float32)
    with sanitizer.watch() as log:
        master["blur"][(2, 2), (4, 4)](cuda.to_device(img), out)
    assert per_element(log.last, "img", write=False) == {9}
    assert per_element(log.last, "out", write=True) == {1}
    assert img.itemsize + out.dtype.itemsize == 8


@needs_simulator
def test_the_access_pictures_launch_what_the_prose_says(master, launches):
    import matplotlib.pyplot as plt

    tile = master["TILE"]
    for which, kernel, config in (("sgd_momentum", master["sgd_momentum"], {"threads": 4}),
                                  ("blur", master["blur"], {"block": (4, 4)}),
                                  ("linear", master["linear_tiled"], {"tile": tile})):
        plt.close(cc.access_picture(kernel, which, **config))
    sgd, blur, linear = launches
    # 11 elements, 2 blocks of 4 threads: the grid-stride loop gives some threads two
    assert sgd.grid == (2,) and sgd.block == (4,) and sgd.arrays["w"].shape == (11,)
    writes = {}
    for _, _, accesses in sgd.arrays["w"].elements():
        for a in accesses:
            writes[a.thread] = writes.get(a.thread, 0) + a.write
    assert len(writes) == 8 and max(writes.values()) == 2
    # the blur: a 6 x 7 image, blocks of 4 x 4 threads
    assert blur.arrays["img"].shape == (6, 7) and blur.block == (4, 4)
    # the tiled layer: a 2 x 2 grid of tiles on X of (TILE + 1) x (TILE + 3); each element
    # of X and W read by the 2 blocks that need it, each element of a shared tile TILE times
    assert linear.grid == (2, 2) and linear.arrays["X"].shape == (tile + 1, tile + 3)
    for name in ("X", "W"):
        readers = {len({a.thread for a in accesses if not a.write})
                   for _, _, accesses in linear.arrays[name].elements()}
        assert readers == {2}, name
    first_block = (0, 0)
    for log in linear.arrays.values():
        if log.space == "shared":
            readers = {len({a.thread for a in accesses if not a.write})
                       for _, block, accesses in log.elements() if block == first_block}
            assert readers == {tile}, log.name
