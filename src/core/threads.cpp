#include "ocellus/core/threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

namespace ocellus {

static int default_threads() {
  if (const char* env = std::getenv("OCELLUS_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

static int& threads_ref() {
  static int n = default_threads();
  return n;
}

int num_threads() { return threads_ref(); }

void set_num_threads(int n) { threads_ref() = n > 0 ? n : default_threads(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int nt = int(std::min<int64_t>(num_threads(), n / grain));
  if (nt <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t begin = n * t / T, end = n * (t + 1) / T;
    if (begin < end) fn(begin, end);
  }
}

void parallel_for_dynamic(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int nt = int(std::min<int64_t>(num_threads(), n_chunks));
  if (nt <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
       c = next.fetch_add(1, std::memory_order_relaxed))
    fn(c * chunk, std::min(n, (c + 1) * chunk));
}

void parallel_for_guided(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(min_chunk, 1);
  const int nt = int(std::min<int64_t>(num_threads(), (n + min_chunk - 1) / min_chunk));
  if (nt <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  for (;;) {
    int64_t begin = next.load(std::memory_order_relaxed), end;
    do {
      if (begin >= n) break;
      end = std::min(n, begin + std::max(min_chunk, (n - begin + nt - 1) / nt));
    } while (!next.compare_exchange_weak(begin, end, std::memory_order_relaxed));
    if (begin >= n) break;
    fn(begin, end);
  }
}

}  // namespace ocellus
