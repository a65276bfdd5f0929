"""course_utils.gpu.sanitizer: kernels with known verdicts, each run under the checker.

19 broken kernels (races within and across blocks, write-write and read-write, a race that
only exists with more than one block, divergent barriers, uninitialised shared reads,
out-of-bounds indices, one array passed as two arguments) must each be reported with the
right kind of problem on the right array; 15 clean kernels (atomics, reductions with
their barriers, grid-stride loops, a tiled matmul, a padded transpose, ...) must report
nothing. Every kernel of course_utils must come out clean too
(tests/unit/test_sanitizer_course.py).

The checker watches the simulator; on a real GPU compute-sanitizer does this job instead.
"""

import numpy as np
import pytest

from course_utils import cudasim
from course_utils.errors import CourseError

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from numba import cuda, float32, int32  # noqa: E402

from course_utils.gpu import sanitizer  # noqa: E402

pytestmark = pytest.mark.skipif(
    not cudasim.on_simulator(),
    reason="the checker watches the CUDA simulator; on a GPU use compute-sanitizer")

NB = 8      # histogram bins
TB = 8      # threads per block of the 1-D cases
TILE = 4    # matmul / transpose tile
rng = np.random.default_rng(7)
VALUES = rng.integers(0, NB, 37).astype(np.int32)
X = rng.standard_normal(37).astype(np.float32)


# ------------------------------------------------------------------------ broken kernels
@cuda.jit
def hist_flush_plain(data, bins):
    """Counts in shared memory (right), adds them to the global bins with `+=` (wrong:
    blocks race; with one block it is right)."""
    local = cuda.shared.array(NB, int32)
    t = cuda.threadIdx.x
    for b in range(t, NB, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    i = cuda.grid(1)
    while i < data.size:
        cuda.atomic.add(local, data[i], 1)
        i += cuda.gridsize(1)
    cuda.syncthreads()
    for b in range(t, NB, cuda.blockDim.x):
        bins[b] += local[b]


@cuda.jit
def hist_shared_plain(data, bins):
    """Counts into shared memory with `+=`: threads of a block race on a bin."""
    local = cuda.shared.array(NB, int32)
    t = cuda.threadIdx.x
    for b in range(t, NB, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    i = cuda.grid(1)
    while i < data.size:
        local[data[i]] += 1
        i += cuda.gridsize(1)
    cuda.syncthreads()
    for b in range(t, NB, cuda.blockDim.x):
        cuda.atomic.add(bins, b, local[b])


@cuda.jit
def hist_not_zeroed(data, bins):
    """Never zeroes its shared histogram: atomics add to garbage."""
    local = cuda.shared.array(NB, int32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    while i < data.size:
        cuda.atomic.add(local, data[i], 1)
        i += cuda.gridsize(1)
    cuda.syncthreads()
    for b in range(t, NB, cuda.blockDim.x):
        cuda.atomic.add(bins, b, local[b])


@cuda.jit
def tree_no_barrier(x, out):
    """A shared-memory tree without the barrier inside its loop."""
    cache = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    cache[t] = x[i] if i < x.size else 0.0
    cuda.syncthreads()
    s = TB // 2
    while s > 0:
        if t < s:
            cache[t] += cache[t + s]
        s //= 2
    if t == 0:
        cuda.atomic.add(out, 0, cache[0])


@cuda.jit
def sum_plain(x, out):
    """Every thread adds into out[0] with `+=`: write-write race in global memory."""
    i = cuda.grid(1)
    if i < x.size:
        out[0] += x[i]


@cuda.jit
def neighbour_no_barrier(x, out):
    """Writes its own shared slot, reads its neighbour's without a barrier."""
    s = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    s[t] = x[t]
    out[t] = s[(t + 1) % TB]


@cuda.jit
def matmul_no_second_barrier(A, B, C):
    """Tiled matmul without the barrier after the inner product: the next tile's loads
    overwrite a tile that slower threads are still reading."""
    sA = cuda.shared.array((TILE, TILE), float32)
    sB = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    acc = float32(0.0)
    for k0 in range(0, A.shape[1], TILE):
        sA[ty, tx] = A[row, k0 + tx] if row < A.shape[0] and k0 + tx < A.shape[1] else 0.0
        sB[ty, tx] = B[k0 + ty, col] if k0 + ty < B.shape[0] and col < B.shape[1] else 0.0
        cuda.syncthreads()
        for j in range(TILE):
            acc += sA[ty, j] * sB[j, tx]
    if row < C.shape[0] and col < C.shape[1]:
        C[row, col] = acc


@cuda.jit
def matmul_no_first_barrier(A, B, C):
    """Tiled matmul that reads the tile before every thread has loaded it."""
    sA = cuda.shared.array((TILE, TILE), float32)
    sB = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    acc = float32(0.0)
    for k0 in range(0, A.shape[1], TILE):
        sA[ty, tx] = A[row, k0 + tx] if row < A.shape[0] and k0 + tx < A.shape[1] else 0.0
        sB[ty, tx] = B[k0 + ty, col] if k0 + ty < B.shape[0] and col < B.shape[1] else 0.0
        for j in range(TILE):
            acc += sA[ty, j] * sB[j, tx]
        cuda.syncthreads()
    if row < C.shape[0] and col < C.shape[1]:
        C[row, col] = acc


@cuda.jit
def barrier_in_if(x):
    """Only the first half of the block reaches the barrier."""
    t = cuda.threadIdx.x
    if t < cuda.blockDim.x // 2:
        cuda.syncthreads()
    x[t] = t


@cuda.jit
def barrier_after_return(x, out):
    """Threads past the end return before the block's barrier."""
    s = cuda.shared.array(TB, float32)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    if i >= x.size:
        return
    s[t] = x[i]
    cuda.syncthreads()
    out[i] = s[t]


@cuda.jit
def barriers_in_both_branches(x):
    """Same number of barriers on both sides of an `if`, but different ones."""
    t = cuda.threadIdx.x
    if t % 2 == 0:
        cuda.syncthreads()
    else:
        cuda.syncthreads()
    x[t] = t


@cuda.jit
def shared_partly_written(x, out):
    """Only threads 1.. write the shared array; thread 0's slot is read unwritten."""
    s = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    if t > 0:
        s[t] = x[t]
    cuda.syncthreads()
    out[t] = s[(t + 1) % TB]


@cuda.jit
def no_bounds_guard(x):
    i = cuda.grid(1)
    x[i] = 1.0


@cuda.jit
def left_neighbour(x, out):
    """out[i] = x[i - 1]: thread 0 reads x[-1]."""
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i - 1]


@cuda.jit
def all_write_one(out):
    """Every thread of the block writes out[0]: write-write race."""
    out[0] = cuda.threadIdx.x


@cuda.jit
def stencil_in_place(x):
    """x[i] = x[i-1] + x[i+1] in place: neighbours read what others write, across blocks."""
    i = cuda.grid(1)
    if 0 < i < x.size - 1:
        x[i] = x[i - 1] + x[i + 1]


@cuda.jit
def transpose_no_barrier(a, out):
    tile = cuda.shared.array((TILE, TILE + 1), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x = cuda.blockIdx.x * TILE + tx
    y = cuda.blockIdx.y * TILE + ty
    if y < a.shape[0] and x < a.shape[1]:
        tile[ty, tx] = a[y, x]
    x = cuda.blockIdx.y * TILE + tx
    y = cuda.blockIdx.x * TILE + ty
    if y < out.shape[0] and x < out.shape[1]:
        out[y, x] = tile[tx, ty]


@cuda.jit
def plain_reset_with_atomics(out):
    """Thread 0 resets out[0] with a plain store while the others add atomically."""
    t = cuda.threadIdx.x
    if t == 0:
        out[0] = 0.0
    else:
        cuda.atomic.add(out, 0, 1.0)


@cuda.jit
def shift_left(src, dst):
    """dst[i] = src[i + 1]: right with two arrays, a race when both are one array."""
    i = cuda.grid(1)
    if i < dst.size - 1:
        dst[i] = src[i + 1]


# ------------------------------------------------------------------------ clean kernels
@cuda.jit
def saxpy_guarded(a, x, y, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = a * x[i] + y[i]


@cuda.jit
def saxpy_grid_stride(a, x, y, out):
    i = cuda.grid(1)
    while i < x.size:
        out[i] = a * x[i] + y[i]
        i += cuda.gridsize(1)


@cuda.jit
def sum_atomic(x, out):
    i = cuda.grid(1)
    if i < x.size:
        cuda.atomic.add(out, 0, x[i])


@cuda.jit
def tree_with_barriers(x, out):
    cache = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    cache[t] = x[i] if i < x.size else 0.0
    cuda.syncthreads()
    s = TB // 2
    while s > 0:
        if t < s:
            cache[t] += cache[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        cuda.atomic.add(out, 0, cache[0])


@cuda.jit
def block_partials(x, partial):
    """Two-pass pattern, pass 1: one partial sum per block, written by thread 0."""
    cache = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    i = cuda.grid(1)
    while i < x.size:
        acc += x[i]
        i += cuda.gridsize(1)
    cache[t] = acc
    cuda.syncthreads()
    s = TB // 2
    while s > 0:
        if t < s:
            cache[t] += cache[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit
def hist_shared_right(data, bins):
    local = cuda.shared.array(NB, int32)
    t = cuda.threadIdx.x
    for b in range(t, NB, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    i = cuda.grid(1)
    while i < data.size:
        cuda.atomic.add(local, data[i], 1)
        i += cuda.gridsize(1)
    cuda.syncthreads()
    for b in range(t, NB, cuda.blockDim.x):
        cuda.atomic.add(bins, b, local[b])


@cuda.jit
def hist_global_atomics(data, bins):
    i = cuda.grid(1)
    while i < data.size:
        cuda.atomic.add(bins, data[i], 1)
        i += cuda.gridsize(1)


@cuda.jit
def matmul_tiled_right(A, B, C):
    sA = cuda.shared.array((TILE, TILE), float32)
    sB = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    acc = float32(0.0)
    for k0 in range(0, A.shape[1], TILE):
        sA[ty, tx] = A[row, k0 + tx] if row < A.shape[0] and k0 + tx < A.shape[1] else 0.0
        sB[ty, tx] = B[k0 + ty, col] if k0 + ty < B.shape[0] and col < B.shape[1] else 0.0
        cuda.syncthreads()
        for j in range(TILE):
            acc += sA[ty, j] * sB[j, tx]
        cuda.syncthreads()
    if row < C.shape[0] and col < C.shape[1]:
        C[row, col] = acc


@cuda.jit
def transpose_padded(a, out):
    tile = cuda.shared.array((TILE, TILE + 1), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    x = cuda.blockIdx.x * TILE + tx
    y = cuda.blockIdx.y * TILE + ty
    if y < a.shape[0] and x < a.shape[1]:
        tile[ty, tx] = a[y, x]
    cuda.syncthreads()
    x = cuda.blockIdx.y * TILE + tx
    y = cuda.blockIdx.x * TILE + ty
    if y < out.shape[0] and x < out.shape[1]:
        out[y, x] = tile[tx, ty]


@cuda.jit
def blur_3x3(img, out):
    r, c = cuda.grid(2)
    if r < img.shape[0] and c < img.shape[1]:
        acc = float32(0.0)
        n = 0
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                rr, cc = r + dr, c + dc
                if 0 <= rr < img.shape[0] and 0 <= cc < img.shape[1]:
                    acc += img[rr, cc]
                    n += 1
        out[r, c] = acc / n


@cuda.jit
def scale_in_place(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] *= 2.0


@cuda.jit
def neighbour_with_barrier(x, out):
    s = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    s[t] = x[t]
    cuda.syncthreads()
    out[t] = s[(t + 1) % TB]


@cuda.jit
def shift_rounds(x, out):
    """Several rounds of read-neighbour / write-own with two barriers per round."""
    s = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    s[t] = x[t]
    cuda.syncthreads()
    for _ in range(3):
        v = s[(t + 1) % TB]
        cuda.syncthreads()
        s[t] = v
        cuda.syncthreads()
    out[t] = s[t]


@cuda.jit
def uniform_loop_barriers(x, out):
    """A barrier inside a loop whose trip count is the same for every thread."""
    s = cuda.shared.array(TB, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    for k in range(3):
        s[t] = x[t] + k
        cuda.syncthreads()
        acc += s[TB - 1 - t]
        cuda.syncthreads()
    out[t] = acc


# ------------------------------------------------------------------------ the cases
def f32(*shape):
    return np.zeros(shape, np.float32)


def mats(m=5, k=7, n=6):
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((k, n)).astype(np.float32), f32(m, n))


def grid2(m, n, tile=TILE):
    return ((n + tile - 1) // tile, (m + tile - 1) // tile), (tile, tile)


ALIASED = cuda.to_device(X)  # the same device array as both arguments

# name: (kernel, grid, block, args, {kind: array or "" for barriers})
BROKEN = {
    "flush with += across blocks": (hist_flush_plain, 3, TB, (VALUES, np.zeros(NB, np.int32)),
                                    {"race": "bins"}),
    "shared count with +=": (hist_shared_plain, 2, TB, (VALUES, np.zeros(NB, np.int32)),
                             {"race": "local"}),
    "shared histogram never zeroed": (hist_not_zeroed, 2, TB, (VALUES, np.zeros(NB, np.int32)),
                                      {"uninitialised shared read": "local"}),
    "tree without loop barrier": (tree_no_barrier, 2, TB, (X[:16], f32(1)), {"race": "cache"}),
    "sum with +=": (sum_plain, 1, TB, (X[:8], f32(1)), {"race": "out"}),
    "neighbour without barrier": (neighbour_no_barrier, 1, TB, (X[:TB], f32(TB)),
                                  {"race": "s"}),
    "matmul without 2nd barrier": (matmul_no_second_barrier, *grid2(5, 6), mats(),
                                   {"race": "sA"}),
    "matmul without 1st barrier": (matmul_no_first_barrier, *grid2(5, 6), mats(),
                                   {"race": "sA"}),
    "barrier inside if": (barrier_in_if, 1, TB, (f32(TB),), {"divergent barrier": ""}),
    "return before barrier": (barrier_after_return, 2, TB, (X[:11], f32(11)),
                              {"divergent barrier": ""}),
    "different barriers per branch": (barriers_in_both_branches, 1, TB, (f32(TB),),
                                      {"divergent barrier": ""}),
    "shared slot never written": (shared_partly_written, 1, TB, (X[:TB], f32(TB)),
                                  {"uninitialised shared read": "s"}),
    "no bounds guard": (no_bounds_guard, 2, TB, (f32(11),), {"out of bounds": "x"}),
    "negative index": (left_neighbour, 2, TB, (X[:11], f32(11)), {"out of bounds": "x"}),
    "all threads write out[0]": (all_write_one, 1, TB, (f32(1),), {"race": "out"}),
    "stencil in place": (stencil_in_place, 3, TB, (X.copy(),), {"race": "x"}),
    "transpose without barrier": (transpose_no_barrier, *grid2(5, 6), (
        rng.standard_normal((5, 6)).astype(np.float32), f32(6, 5)), {"race": "tile"}),
    "plain store beside atomics": (plain_reset_with_atomics, 1, TB, (f32(1),),
                                   {"race": "out"}),
    "one array passed twice": (shift_left, 3, TB, (ALIASED, ALIASED), {"race": "src"}),
}

CLEAN = {
    "saxpy with guard": (saxpy_guarded, 5, TB, (np.float32(2), X, X, f32(37))),
    "grid-stride saxpy": (saxpy_grid_stride, 2, TB, (np.float32(2), X, X, f32(37))),
    "atomic sum": (sum_atomic, 5, TB, (X, f32(1))),
    "tree with barriers": (tree_with_barriers, 5, TB, (X, f32(1))),
    "two-pass partials": (block_partials, 3, TB, (X, f32(3))),
    "shared histogram": (hist_shared_right, 3, TB, (VALUES, np.zeros(NB, np.int32))),
    "global atomic histogram": (hist_global_atomics, 3, TB, (VALUES, np.zeros(NB, np.int32))),
    "tiled matmul": (matmul_tiled_right, *grid2(5, 6), mats()),
    "padded transpose": (transpose_padded, *grid2(5, 6), (
        rng.standard_normal((5, 6)).astype(np.float32), f32(6, 5))),
    "3x3 blur": (blur_3x3, (2, 2), (4, 4), (rng.standard_normal((7, 6)).astype(np.float32),
                                           f32(7, 6))),
    "scale in place": (scale_in_place, 5, TB, (X.copy(),)),
    "neighbour with barrier": (neighbour_with_barrier, 1, TB, (X[:TB], f32(TB))),
    "shift rounds": (shift_rounds, 1, TB, (X[:TB], f32(TB))),
    "uniform loop barriers": (uniform_loop_barriers, 1, TB, (X[:TB], f32(TB))),
    "shift between two arrays": (shift_left, 3, TB, (X, f32(37))),
}


def _run(kernel, grid, block, args):
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with sanitizer.watch() as log:
        try:
            kernel[grid, block](*args)
        except sanitizer.OutOfBoundsError:
            pass  # reported in the log; a real GPU would read or corrupt memory
    return log.last


def test_suite_size():
    assert len(BROKEN) >= 12 and len(CLEAN) >= 12


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_kernel_gets_its_verdict(name):
    kernel, grid, block, args, expected = BROKEN[name]
    launch = _run(kernel, grid, block, args)
    found = {(p.kind, p.array) for p in launch.problems}
    for kind, array in expected.items():
        assert (kind, array) in found, f"{name}: expected {kind} on {array!r}\n{launch.report()}"
    for p in launch.problems:
        assert p.threads and p.message, p
    text = launch.report()
    assert kernel.__name__ in text and "problem" in text


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_kernel_reports_nothing(name):
    kernel, grid, block, args = CLEAN[name]
    launch = _run(kernel, grid, block, args)
    assert launch.clean, launch.report()
    assert "clean" in launch.report()


def test_a_race_across_blocks_needs_more_than_one_block():
    """The simulator gives the right histogram either way; only the record tells."""
    one = _run(hist_flush_plain, 1, TB, (VALUES, np.zeros(NB, np.int32)))
    assert one.clean, one.report()
    bins = np.zeros(NB, np.int32)
    with sanitizer.watch() as log:
        hist_flush_plain[3, TB](VALUES, bins)
    np.testing.assert_array_equal(bins, np.bincount(VALUES, minlength=NB))
    races = [p for p in log.problems if p.kind == "race"]
    assert [r.index for r in races] == [(0,), (1,), (2,)]  # three shown in full ...
    assert races[-1].more == NB - 3                          # ... the other bins counted
    for race in races:
        a, b = race.threads
        assert a[0] != b[0], "the two threads are in different blocks"
        assert "different blocks" in race.message and "`bins`" in race.message


def test_race_message_names_array_index_threads_and_lines():
    launch = _run(*BROKEN["tree without loop barrier"][:4])
    race = launch.problems[0]
    assert race.kind == "race" and race.array == "cache" and race.index is not None
    assert "tree_no_barrier" in race.message and "line " in race.message
    assert "between the same two barriers" in race.message


def test_out_of_bounds_stops_the_launch_with_a_clear_error():
    with pytest.raises(IndexError, match=r"wrote global `x`\[1[1-5]\].*outside its shape \(11,\)"):
        with sanitizer.watch():
            no_bounds_guard[2, TB](f32(11))


def test_counts_per_thread_and_per_block():
    A, B, C = mats(8, 8, 8)
    grid, block = grid2(8, 8)
    with sanitizer.watch() as log:
        matmul_tiled_right[grid, block](A, B, C)
    np.testing.assert_allclose(C, A @ B, rtol=1e-5, atol=1e-5)
    launch = log.last
    # each thread loads one element of A and one of B per tile: 2 tiles of 4
    assert launch.max_counts().global_reads == 2 * 2
    assert launch.max_counts().global_writes == 1
    assert launch.max_counts().shared_reads == 2 * 2 * TILE
    # every element of A is read once by each block that needs it, never twice
    assert launch.most_per_block("A", write=False)[0] == 1
    with sanitizer.watch() as log:
        hist_shared_right[3, TB](VALUES, np.zeros(NB, np.int32))
    assert log.last.most_per_block("bins", write=True)[0] == 1


def test_watch_refuses_nesting_and_restores_the_simulator():
    from numba.cuda.simulator import kernel as sim_kernel

    before = sim_kernel.FakeCUDAKernel.__call__
    with sanitizer.watch(), pytest.raises(Exception, match="already active"):
        with sanitizer.watch():
            pass
    assert sim_kernel.FakeCUDAKernel.__call__ is before
    out = f32(1)
    all_write_one[1, 2](out)  # outside watch(): nothing recorded, nothing raised


def test_last_without_a_launch_is_a_usage_error():
    with sanitizer.watch() as log, pytest.raises(CourseError, match="no kernel"):
        log.last  # noqa: B018
