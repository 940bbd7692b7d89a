#include "ocellus/core/threads.h"

#include <omp.h>

#include "ocellus/core/error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <atomic>
#include <cstdlib>
#include <thread>

namespace ocellus {

static int cores() { return int(std::max(1u, std::thread::hardware_concurrency())); }

// More threads than cores makes every kernel slower (each parallel region waits at its barrier for
// threads that are not running): allowed, since a user may know better, but said once.
static int checked(int n, const char* source) {
  static bool warned = false;
  if (n > 2 * cores() && !warned) {
    warned = true;
    std::fprintf(stderr, "ocellus: warning: %s asks for %d threads on %d cores; more threads than cores slows every kernel\n",
                 source, n, cores());
  }
  return n;
}

// OCELLUS_THREADS when set (a whole number from 1 to 4096, else an Error naming it), else the cores.
static int default_threads() {
  if (const char* env = std::getenv("OCELLUS_THREADS")) {
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || errno != 0 || n < 1 || n > 4096)
      fail("OCELLUS_THREADS='", env, "': expected a whole number of threads from 1 to 4096 (unset: one per core, ", cores(), ")");
    return checked(int(n), "OCELLUS_THREADS");
  }
  return cores();
}

static int& threads_ref() {
  static int n = default_threads();
  return n;
}

int num_threads() { return threads_ref(); }

void set_num_threads(int n) {
  OCELLUS_CHECK(n <= 4096, "threads: ", n, " is more than 4096");
  const int v = n > 0 ? checked(n, "-t") : default_threads();
  threads_ref() = v;
}

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
