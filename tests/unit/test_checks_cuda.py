"""course_utils.checks.cuda: right kernels pass, the usual wrong ones fail with the hint.

Runs on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, or no GPU) or on a real GPU. The
kernels below are the labs' answers and deliberately broken variants of them.
"""

import numpy as np
import pytest

from course_utils import cudasim
from course_utils.checks import scoring
from course_utils.errors import UsageError

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from numba import cuda, float32, int32  # noqa: E402

from course_utils.checks import cuda as cc  # noqa: E402

THREADS = 32  # small blocks: the simulator runs one Python thread per CUDA thread
TILE = 8
NBINS = 45  # more bins than THREADS, and not a multiple of it


# --------------------------------------------------------------------------- SGD momentum
@cuda.jit
def sgd_ok(lr, momentum, w, g, v):
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        velocity = momentum * v[i] + g[i]
        v[i] = velocity
        w[i] -= lr * velocity


@cuda.jit
def sgd_no_guard(lr, momentum, w, g, v):
    i = cuda.grid(1)
    v[i] = momentum * v[i] + g[i]
    w[i] -= lr * v[i]


@cuda.jit
def sgd_no_loop(lr, momentum, w, g, v):
    i = cuda.grid(1)
    if i < w.size:
        v[i] = momentum * v[i] + g[i]
        w[i] -= lr * v[i]


@cuda.jit
def sgd_block_stride(lr, momentum, w, g, v):
    for i in range(cuda.grid(1), w.size, cuda.blockDim.x):
        v[i] = momentum * v[i] + g[i]
        w[i] -= lr * v[i]


@cuda.jit
def sgd_old_velocity(lr, momentum, w, g, v):
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        w[i] -= lr * v[i]
        v[i] = momentum * v[i] + g[i]


@cuda.jit
def sgd_todo(lr, momentum, w, g, v):
    raise NotImplementedError("Lab answer: write your code here")


def sgd_not_jitted(lr, momentum, w, g, v):
    w[0] -= lr * g[0]


def test_sgd_right_answer_passes():
    cc.check_sgd_momentum(sgd_ok, threads=THREADS)


def test_sgd_reference_is_torch_optim_sgd():
    import torch

    rng = np.random.default_rng(0)
    w, v, g = (rng.standard_normal(50).astype(np.float32) for _ in range(3))
    param = torch.nn.Parameter(torch.from_numpy(w.copy()))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    param.grad = torch.from_numpy(v.copy())  # step 1 sets the velocity to the gradient
    optimizer.step()
    param.grad = torch.from_numpy(g.copy())
    optimizer.step()
    w1, v1 = cc.sgd_momentum_reference(0.1, 0.9, w, v, np.zeros_like(v))
    w2, v2 = cc.sgd_momentum_reference(0.1, 0.9, w1, g, v1)
    np.testing.assert_allclose(w2, param.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v2, optimizer.state[param]["momentum_buffer"].numpy(),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernel, hint", [
    (sgd_no_guard, "bounds guard"),
    (sgd_no_loop, "cuda.gridsize(1)"),
    # blocks overlap: elements take two steps (also a race between blocks on a GPU)
    (sgd_block_stride, "took two steps"),
    (sgd_old_velocity, "uses the NEW v[i]"),
])
def test_sgd_mistakes_are_named(kernel, hint):
    with pytest.raises(AssertionError, match="sgd_momentum on n=") as info:
        cc.check_sgd_momentum(kernel, threads=THREADS)
    assert hint in str(info.value)


def test_unfinished_and_unjitted_kernels():
    with pytest.raises(NotImplementedError):
        cc.check_sgd_momentum(sgd_todo, threads=THREADS)
    with pytest.raises(AssertionError, match="@cuda.jit"):
        cc.check_sgd_momentum(sgd_not_jitted, threads=THREADS)
    assert not cc.implemented(sgd_todo) and cc.implemented(sgd_ok)


# --------------------------------------------------------------------------- blur
@cuda.jit
def blur_ok(img, out):
    col, row = cuda.grid(2)
    rows, cols = img.shape
    if row < rows and col < cols:
        total = float32(0.0)
        for dr in range(-1, 2):
            r = min(max(row + dr, 0), rows - 1)
            for dc in range(-1, 2):
                total += img[r, min(max(col + dc, 0), cols - 1)]
        out[row, col] = total / float32(9.0)


@cuda.jit
def blur_inside_only(img, out):  # lesson 07's rule
    col, row = cuda.grid(2)
    rows, cols = img.shape
    if row < rows and col < cols:
        total = float32(0.0)
        count = 0
        for r in range(max(row - 1, 0), min(row + 2, rows)):
            for c in range(max(col - 1, 0), min(col + 2, cols)):
                total += img[r, c]
                count += 1
        out[row, col] = total / float32(count)


@cuda.jit
def blur_no_guard(img, out):
    col, row = cuda.grid(2)
    rows, cols = img.shape
    total = float32(0.0)
    for dr in range(-1, 2):
        r = min(max(row + dr, 0), rows - 1)
        for dc in range(-1, 2):
            total += img[r, min(max(col + dc, 0), cols - 1)]
    out[row, col] = total / float32(9.0)


@cuda.jit
def blur_swapped_xy(img, out):
    row, col = cuda.grid(2)  # x along rows: wrong
    rows, cols = img.shape
    if row < rows and col < cols:
        total = float32(0.0)
        for dr in range(-1, 2):
            r = min(max(row + dr, 0), rows - 1)
            for dc in range(-1, 2):
                total += img[r, min(max(col + dc, 0), cols - 1)]
        out[row, col] = total / float32(9.0)


def test_blur_right_answer_and_reference():
    cc.check_blur(blur_ok, block=(8, 4))
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    corner = (4 * img[0, 0] + 2 * img[0, 1] + 2 * img[1, 0] + img[1, 1]) / 9
    np.testing.assert_allclose(cc.blur_reference(img)[0, 0], corner, rtol=1e-6)


@pytest.mark.parametrize("kernel, hint", [
    (blur_inside_only, "lesson 07"),
    (blur_no_guard, "bounds guard"),
    (blur_swapped_xy, "never written"),
])
def test_blur_mistakes_are_named(kernel, hint):
    with pytest.raises(AssertionError, match="blur on a") as info:
        cc.check_blur(kernel, block=(8, 4))
    assert hint in str(info.value)


# --------------------------------------------------------------------------- linear layer
@cuda.jit
def linear_ok(X, W, b, Y):
    sX = cuda.shared.array((TILE, TILE), float32)
    sW = cuda.shared.array((TILE, TILE + 1), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    M, K = X.shape
    N = W.shape[0]
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    w_row = cuda.blockIdx.x * TILE + ty
    acc = float32(0.0)
    for k0 in range(0, K, TILE):
        sX[ty, tx] = X[row, k0 + tx] if row < M and k0 + tx < K else float32(0.0)
        sW[ty, tx] = W[w_row, k0 + tx] if w_row < N and k0 + tx < K else float32(0.0)
        cuda.syncthreads()
        for j in range(TILE):
            acc += sX[ty, j] * sW[tx, j]
        cuda.syncthreads()
    if row < M and col < N:
        Y[row, col] = acc + b[col]


@cuda.jit
def linear_no_sync(X, W, b, Y):
    sX = cuda.shared.array((TILE, TILE), float32)
    sW = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    M, K = X.shape
    N = W.shape[0]
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    w_row = cuda.blockIdx.x * TILE + ty
    acc = float32(0.0)
    for k0 in range(0, K, TILE):
        sX[ty, tx] = X[row, k0 + tx] if row < M and k0 + tx < K else float32(0.0)
        sW[ty, tx] = W[w_row, k0 + tx] if w_row < N and k0 + tx < K else float32(0.0)
        for j in range(TILE):
            acc += sX[ty, j] * sW[tx, j]
    if row < M and col < N:
        Y[row, col] = acc + b[col]


@cuda.jit
def linear_late_sync(X, W, b, Y):
    """Syncs after using the tiles but not between loading and using them."""
    sX = cuda.shared.array((TILE, TILE), float32)
    sW = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    M, K = X.shape
    N = W.shape[0]
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    w_row = cuda.blockIdx.x * TILE + ty
    acc = float32(0.0)
    for k0 in range(0, K, TILE):
        sX[ty, tx] = X[row, k0 + tx] if row < M and k0 + tx < K else float32(0.0)
        sW[ty, tx] = W[w_row, k0 + tx] if w_row < N and k0 + tx < K else float32(0.0)
        for j in range(TILE):
            acc += sX[ty, j] * sW[tx, j]
        cuda.syncthreads()
    if row < M and col < N:
        Y[row, col] = acc + b[col]


@cuda.jit
def linear_no_zero_fill(X, W, b, Y):
    sX = cuda.shared.array((TILE, TILE), float32)
    sW = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    acc = float32(0.0)
    for k0 in range(0, X.shape[1], TILE):
        sX[ty, tx] = X[row, k0 + tx]
        sW[ty, tx] = W[cuda.blockIdx.x * TILE + ty, k0 + tx]
        cuda.syncthreads()
        for j in range(TILE):
            acc += sX[ty, j] * sW[tx, j]
        cuda.syncthreads()
    if row < X.shape[0] and col < W.shape[0]:
        Y[row, col] = acc + b[col]


@cuda.jit
def linear_no_bias(X, W, b, Y):
    sX = cuda.shared.array((TILE, TILE), float32)
    sW = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    M, K = X.shape
    N = W.shape[0]
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    w_row = cuda.blockIdx.x * TILE + ty
    acc = float32(0.0)
    for k0 in range(0, K, TILE):
        sX[ty, tx] = X[row, k0 + tx] if row < M and k0 + tx < K else float32(0.0)
        sW[ty, tx] = W[w_row, k0 + tx] if w_row < N and k0 + tx < K else float32(0.0)
        cuda.syncthreads()
        for j in range(TILE):
            acc += sX[ty, j] * sW[tx, j]
        cuda.syncthreads()
    if row < M and col < N:
        Y[row, col] = acc


@cuda.jit
def linear_naive_in_disguise(X, W, b, Y):
    col, row = cuda.grid(2)
    if row < Y.shape[0] and col < Y.shape[1]:
        acc = float32(0.0)
        for k in range(X.shape[1]):
            acc += X[row, k] * W[col, k]
        Y[row, col] = acc + b[col]


def test_linear_right_answer_passes():
    cc.check_linear_tiled(linear_ok, tile=TILE)


def test_linear_reference_is_torch_linear():
    import torch

    rng = np.random.default_rng(1)
    X, W, b = (rng.standard_normal(s) for s in ((5, 7), (3, 7), 3))
    expected = torch.nn.functional.linear(*(torch.from_numpy(a) for a in (X, W, b)))
    np.testing.assert_allclose(cc.linear_reference(X, W, b), expected.numpy(), rtol=1e-12)


@pytest.mark.parametrize("kernel, hint", [
    (linear_no_sync, "never calls cuda.syncthreads()"),
    (linear_late_sync, "syncthreads"),
    (linear_no_zero_fill, "outside an array"),
    (linear_no_bias, "without the bias"),
    (linear_naive_in_disguise, "never calls cuda.shared.array"),
])
def test_linear_mistakes_are_named(kernel, hint):
    with pytest.raises(AssertionError, match="linear_tiled") as info:
        cc.check_linear_tiled(kernel, tile=TILE)
    assert hint in str(info.value)


# --------------------------------------------------------------------------- GPU-only check
def test_gpu_only_check_is_not_graded_on_the_simulator(capsys):
    if not cudasim.on_simulator():
        pytest.skip("checks the simulator's behaviour")
    scoring.RESULTS.pop("speed", None)
    ran = []
    assert cc.gpu_only_check("speed", 2, lambda: ran.append(1)) is False
    assert not ran and "speed" not in scoring.RESULTS
    assert "not graded on the CUDA simulator" in capsys.readouterr().out


def test_gpu_only_check_is_graded_where_it_runs(monkeypatch):
    monkeypatch.setattr(cc, "on_simulator", lambda: False)
    scoring.RESULTS.pop("speed (test)", None)
    assert cc.gpu_only_check("speed (test)", 2, lambda: None) is True
    assert scoring.RESULTS.pop("speed (test)").points == 2


def test_speed_check_reports_both_timings_when_too_slow():
    """The speed check's code path, at a tiny size (on the simulator the times mean nothing,
    so a huge required speed-up fails there by construction)."""
    result = {}
    with pytest.raises(AssertionError, match=r"x faster; needs at least 1e\+09x"):
        cc.check_linear_speed(linear_ok, linear_naive_in_disguise, tile=TILE, n=9,
                              min_speedup=1e9, warmup=0, repeats=1, result=result)
    assert set(result) >= {"naive", "tiled", "speedup", "naive_gflops", "tiled_gflops"}


@pytest.mark.gpu
def test_speed_check_on_a_gpu():
    result = {}
    speedup = cc.check_linear_speed(linear_ok, linear_naive_in_disguise, tile=TILE, n=512,
                                    min_speedup=0.01, warmup=1, repeats=3, result=result)
    assert speedup == result["speedup"] > 0


# --------------------------------------------------------------------------- reduction
@cuda.jit
def block_amax_ok(x, partial):
    cache = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        acc = max(acc, abs(x[i]))
    cache[t] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            cache[t] = max(cache[t], cache[t + step])
        cuda.syncthreads()
        step //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit
def block_amax_tree_no_sync(x, partial):
    cache = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        acc = max(acc, abs(x[i]))
    cache[t] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            cache[t] = max(cache[t], cache[t + step])
        step //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit
def block_amax_one_each(x, partial):
    cache = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    cache[t] = abs(x[i]) if i < x.size else float32(0.0)
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            cache[t] = max(cache[t], cache[t + step])
        cuda.syncthreads()
        step //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit
def block_amax_no_abs(x, partial):
    cache = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        acc = max(acc, x[i])
    cache[t] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            cache[t] = max(cache[t], cache[t + step])
        cuda.syncthreads()
        step //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit
def block_sum_of_lesson09(x, partial):
    """Lesson 09's reduction (a sum): the right shape, the wrong operation."""
    cache = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        acc += x[i]
    cache[t] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            cache[t] += cache[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


def reduce_amax_ok(x, blocks):
    partial = cuda.device_array(blocks, dtype=np.float32)
    result = cuda.device_array(1, dtype=np.float32)
    block_amax_ok[blocks, THREADS](x, partial)
    block_amax_ok[1, THREADS](partial, result)
    return float(result.copy_to_host()[0])


def reduce_amax_one_pass(x, blocks):
    partial = cuda.device_array(blocks, dtype=np.float32)
    block_amax_ok[blocks, THREADS](x, partial)
    return float(partial.copy_to_host()[0])


def test_reduction_right_answers_pass():
    cc.check_block_amax(block_amax_ok, threads=THREADS)
    cc.check_reduce_amax(reduce_amax_ok, threads=THREADS)


@pytest.mark.parametrize("kernel, hint", [
    (block_amax_tree_no_sync, "syncthreads"),
    (block_amax_one_each, "only one element"),
    (block_amax_no_abs, "ABSOLUTE"),
    (block_sum_of_lesson09, "blocks' sums"),
])
def test_block_amax_mistakes_are_named(kernel, hint):
    with pytest.raises(AssertionError, match="block_amax on n=") as info:
        cc.check_block_amax(kernel, threads=THREADS)
    assert hint in str(info.value)


def test_reduce_amax_waits_for_block_amax():
    @cuda.jit
    def block_amax_todo(x, partial):
        raise NotImplementedError("Lab answer: write your code here")

    with pytest.raises(NotImplementedError, match="block_amax"):
        cc.check_reduce_amax(reduce_amax_ok, threads=THREADS, block_amax=block_amax_todo)


def test_reduce_amax_one_pass_is_named():
    with pytest.raises(AssertionError, match="block 0's result only"):
        cc.check_reduce_amax(reduce_amax_one_pass, threads=THREADS)


def test_block_amax_reference_follows_the_grid_stride_split():
    x = np.array([0, -1, 2, -3, 4, -5, 6, -7, 8, -9], dtype=np.float64)
    # 2 blocks x 2 threads: thread g looks at x[g], x[g + 4], x[g + 8]
    np.testing.assert_array_equal(cc.thread_shares(x, 2, 2), [8, 9, 6, 7])
    np.testing.assert_array_equal(cc.thread_shares(x, 2, 2, op="sum"), [12, -15, 8, -10])
    np.testing.assert_array_equal(cc.block_amax_reference(x, 2, 2), [9, 7])


# --------------------------------------------------------------------------- histogram
@cuda.jit(device=True)
def bin_index(v, lo, inv_width):
    t = (v - lo) * inv_width
    if t >= 0 and t < NBINS:
        return int(t)
    return -1


@cuda.jit
def histogram_ok(data, lo, inv_width, bins):
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    for b in range(t, NBINS, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        b = bin_index(data[i], lo, inv_width)
        if b >= 0:
            cuda.atomic.add(local, b, 1)
    cuda.syncthreads()
    for b in range(t, NBINS, cuda.blockDim.x):
        if local[b] != 0:
            cuda.atomic.add(bins, b, local[b])


@cuda.jit
def histogram_last_bin_lost(data, lo, inv_width, bins):
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    for b in range(t, NBINS, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        b = bin_index(data[i], lo, inv_width)
        if b >= 0:
            cuda.atomic.add(local, b, 1)
    cuda.syncthreads()
    for b in range(t, NBINS - 1, cuda.blockDim.x):  # off by one
        cuda.atomic.add(bins, b, local[b])


@cuda.jit
def histogram_one_bin_per_thread(data, lo, inv_width, bins):
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    if t < NBINS:
        local[t] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        b = bin_index(data[i], lo, inv_width)
        if b >= 0:
            cuda.atomic.add(local, b, 1)
    cuda.syncthreads()
    if t < NBINS:
        cuda.atomic.add(bins, t, local[t])


@cuda.jit
def histogram_not_zeroed(data, lo, inv_width, bins):
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        b = bin_index(data[i], lo, inv_width)
        if b >= 0:
            cuda.atomic.add(local, b, 1)
    cuda.syncthreads()
    for b in range(t, NBINS, cuda.blockDim.x):
        cuda.atomic.add(bins, b, local[b])


@cuda.jit
def histogram_clamped(data, lo, inv_width, bins):
    """Values outside the range clamped into the edge bins instead of dropped."""
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    for b in range(t, NBINS, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        f = (data[i] - lo) * inv_width
        b = min(max(int(f), 0), NBINS - 1)
        cuda.atomic.add(local, b, 1)
    cuda.syncthreads()
    for b in range(t, NBINS, cuda.blockDim.x):
        cuda.atomic.add(bins, b, local[b])


def test_histogram_right_answer_passes():
    cc.check_histogram(histogram_ok, threads=THREADS, nbins=NBINS)


@pytest.mark.parametrize("kernel, hint", [
    (histogram_last_bin_lost, "Only the last bin"),
    (histogram_one_bin_per_thread, f"Only bins >= {THREADS}"),
    (histogram_not_zeroed, "zeroed"),
    (histogram_clamped, "outside: skip them"),
])
def test_histogram_mistakes_are_named(kernel, hint):
    with pytest.raises(AssertionError, match="histogram_shared on n=") as info:
        cc.check_histogram(kernel, threads=THREADS, nbins=NBINS)
    assert hint in str(info.value)


def test_histogram_cases_cover_every_bin_the_edges_and_odd_sizes():
    rng = np.random.default_rng(0)
    cases = cc.histogram_cases(NBINS, rng)
    assert cc.bin_of(cases[-1][0], cc.HIST_LO, cc.HIST_INV_WIDTH, NBINS).tolist() == [NBINS - 1]
    data, blocks = cases[0]
    bins = cc.bin_of(data, cc.HIST_LO, cc.HIST_INV_WIDTH, NBINS)
    assert set(bins[bins >= 0].tolist()) == set(range(NBINS)) and (bins < 0).sum() >= 6
    end = np.float32(cc.HIST_LO + NBINS / cc.HIST_INV_WIDTH)
    assert (data == end).any()  # a value exactly at the end of the range: not counted
    assert data.size % (blocks * THREADS)


def test_histogram_reference_is_numpys_away_from_the_edges():
    rng = np.random.default_rng(3)
    centres = cc.HIST_LO + (rng.integers(-3, NBINS + 3, 500) + 0.5) / cc.HIST_INV_WIDTH
    data = centres.astype(np.float32)
    hi = cc.HIST_LO + NBINS / cc.HIST_INV_WIDTH
    expected, _ = np.histogram(data, NBINS, range=(cc.HIST_LO, hi))
    np.testing.assert_array_equal(cc.histogram_reference(data, NBINS), expected)


# --------------------------------------------------------------------------- settings
LAB2 = {"threads": 64, "block_x": 8, "block_y": 8, "sgd_n": 1001, "sgd_blocks": 2,
        "image_rows": 24, "image_cols": 40, "speed_n": 2048, "min_speedup": 3.0,
        "warmup": 0, "repeats": 1, "launches": 1}
LAB3 = {"threads": 64, "blocks": 3, "nbins": 100, "amax_n": 1001, "hist_n": 1001,
        "warmup": 0, "repeats": 1, "launches": 1}


def test_good_settings_pass_through():
    assert cc.lab2_settings(LAB2) == LAB2
    assert cc.lab3_settings(LAB3) == LAB3


@pytest.mark.parametrize("key, value, match", [
    ("threads", 0, "THREADS=0 is not valid"),
    ("threads", -32, "THREADS=-32 is not valid"),
    ("threads", 2048, "THREADS=2048 is not valid.*1024"),
    ("block_x", 64, r"\(BLOCK_X, BLOCK_Y\)=\(64, 64\).*4096 threads"),
    ("block_y", 0, r"\(BLOCK_X, BLOCK_Y\)=\(8, 0\) is not valid"),
    ("sgd_n", 0, "SGD_N=0 is not valid"),
    ("min_speedup", -1.0, "MIN_SPEEDUP=-1.0 is not valid"),
    ("min_speedup", "fast", "MIN_SPEEDUP='fast' is not valid; it must be a number > 0"),
    ("image_rows", "abc", "IMAGE_ROWS='abc' is not valid; it must be an integer >= 1"),
])
def test_bad_lab2_settings_name_the_parameter(key, value, match):
    cfg = {**LAB2, key: value}
    if key == "block_x":
        cfg["block_y"] = 64
    with pytest.raises(UsageError, match=match):
        cc.lab2_settings(cfg)


@pytest.mark.parametrize("key, value, match", [
    ("threads", 48, "THREADS=48 is not valid: the tree reduction.*power of two"),
    ("threads", 0, "THREADS=0 is not valid"),
    ("nbins", 100_000, "NBINS=100000 is not valid.*<= 12288"),
    ("blocks", -1, "BLOCKS=-1 is not valid"),
])
def test_bad_lab3_settings_name_the_parameter(key, value, match):
    with pytest.raises(UsageError, match=match):
        cc.lab3_settings({**LAB3, key: value})


# ------------------------------------------------- the access checker inside the checks
@cuda.jit
def histogram_flush_plain(data, lo, inv_width, bins):
    """Right on the simulator (one block at a time), wrong on a GPU: `+=` into global."""
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    for b in range(t, NBINS, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        b = bin_index(data[i], lo, inv_width)
        if b >= 0:
            cuda.atomic.add(local, b, 1)
    cuda.syncthreads()
    for b in range(t, NBINS, cuda.blockDim.x):
        bins[b] += local[b]


@cuda.jit
def histogram_global_each_value(data, lo, inv_width, bins):
    """Right everywhere, but every value is an atomic on global memory (the shared
    histogram is zeroed and never used): the traffic check catches it."""
    local = cuda.shared.array(NBINS, int32)
    t = cuda.threadIdx.x
    for b in range(t, NBINS, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), data.size, cuda.gridsize(1)):
        b = bin_index(data[i], lo, inv_width)
        if b >= 0:
            cuda.atomic.add(bins, b, 1)


@cuda.jit
def linear_shared_for_show(X, W, b, Y):
    """Right everywhere, but reads X and W from global memory for every product."""
    s = cuda.shared.array(1, float32)
    col, row = cuda.grid(2)
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        s[0] = 0.0
    cuda.syncthreads()
    if row < Y.shape[0] and col < Y.shape[1]:
        acc = float32(0.0)
        for k in range(X.shape[1]):
            acc += X[row, k] * W[col, k]
        Y[row, col] = acc + b[col] + s[0]


@cuda.jit
def block_amax_global_atomics(x, partial):
    """Right results, but every thread folds its value into partial[b] in global memory."""
    cache = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    acc = float32(0.0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        acc = max(acc, abs(x[i]))
    cache[t] = acc
    cuda.syncthreads()
    if t == 0:
        partial[cuda.blockIdx.x] = 0.0
    cuda.syncthreads()
    cuda.atomic.max(partial, cuda.blockIdx.x, cache[t])


needs_simulator = pytest.mark.skipif(not cudasim.on_simulator(),
                                     reason="the access checker watches the simulator")


@needs_simulator
def test_a_race_between_blocks_fails_although_the_answer_is_right():
    with pytest.raises(AssertionError) as info:
        cc.check_histogram(histogram_flush_plain, threads=THREADS, nbins=NBINS)
    text = str(info.value)
    assert "race: global `bins`" in text and "different blocks" in text
    assert "cuda.atomic.add" in text


@needs_simulator
def test_traffic_checks_pass_the_right_kernels():
    cc.check_linear_traffic(linear_ok, tile=TILE)
    cc.check_block_amax_traffic(block_amax_ok, threads=THREADS)
    cc.check_histogram_traffic(histogram_ok, threads=THREADS, nbins=NBINS)


@needs_simulator
@pytest.mark.parametrize("check, kernel, config, message", [
    (cc.check_linear_traffic, linear_shared_for_show, {"tile": TILE}, "X["),
    (cc.check_block_amax_traffic, block_amax_global_atomics, {"threads": THREADS},
     "partial[0] was written"),
    (cc.check_histogram_traffic, histogram_global_each_value,
     {"threads": THREADS, "nbins": NBINS}, "bins["),
])
def test_right_answers_that_ignore_the_memory_hierarchy_lose_the_traffic_check(
        check, kernel, config, message):
    kernel_check = {cc.check_linear_traffic: cc.check_linear_tiled,
                    cc.check_block_amax_traffic: cc.check_block_amax,
                    cc.check_histogram_traffic: cc.check_histogram}[check]
    kernel_check(kernel, **config)  # the answer itself is right ...
    with pytest.raises(AssertionError) as info:  # ... its global-memory traffic is not
        check(kernel, **config)
    text = str(info.value)
    assert message in text and "in global memory by the threads of block" in text
    assert "Most accesses by one thread" in text


def test_simulator_only_check_is_not_graded_on_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(cc, "on_simulator", lambda: False)
    ran = []
    assert not cc.simulator_only_check("traffic (test)", 2, lambda: ran.append(1))
    assert not ran and "simulator only" in capsys.readouterr().out


@needs_simulator
@pytest.mark.parametrize("which, kernel, config", [
    ("sgd_momentum", sgd_ok, {"threads": 4}),
    ("blur", blur_ok, {"block": (4, 4)}),
    ("linear", linear_ok, {"tile": TILE}),
    ("block_amax", block_amax_ok, {"threads": THREADS}),
    ("histogram", histogram_ok, {"threads": THREADS, "nbins": NBINS}),
])
def test_access_picture_of_every_lab_kernel(which, kernel, config):
    import matplotlib.pyplot as plt

    fig = cc.access_picture(kernel, which, **config)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("written by" in t for t in titles) and any("read it" in t for t in titles)
    plt.close(fig)
