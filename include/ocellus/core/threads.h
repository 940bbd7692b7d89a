#pragma once
// The one thread setting every kernel uses. Work is spread with OpenMP; OpenBLAS (its OpenMP
// build) shares the same threads, so the two never oversubscribe the cores.
#include <cstdint>
#include <functional>

namespace ocellus {

// Default: OCELLUS_THREADS from the environment (a whole number from 1 to 4096, else an Error
// naming it), else the number of cores. More than twice the cores is allowed, with a warning.
int num_threads();
void set_num_threads(int n);  // n <= 0 restores the default; n > 4096 is an Error

// Calls fn(begin, end) on contiguous chunks covering [0, n), in parallel when n >= grain * 2.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// The same with [0, n) cut into chunks of `chunk` that threads take in order as they come free:
// for memory-bound loops, where one core often streams faster than the other and an equal
// split would leave the faster one waiting at the end.
void parallel_for_dynamic(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);

// Guided: each thread, as it comes free, takes 1/threads of what is left (at least min_chunk):
// long contiguous runs first (a memory stream the hardware prefetcher keeps up with), short
// ones at the end that even out a core that streams slower. For memory-bound matrix-vector
// products: measured 0.70-0.83 -> 0.84-1.0 of read bandwidth over fixed chunks of 1/16 (Zen 5).
void parallel_for_guided(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ocellus
