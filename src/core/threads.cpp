#include "ocellus/core/threads.h"

#include <omp.h>

#include <algorithm>
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

}  // namespace ocellus
