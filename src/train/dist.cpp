#include "ocellus/train/dist.h"

#include <algorithm>
#include <cstdlib>

#include "ocellus/core/error.h"

#ifdef OCELLUS_MPI
#include <mpi.h>
#endif

namespace ocellus::train {

namespace {
Dist g_dist;
bool g_started = false;
}  // namespace

bool dist_built() {
#ifdef OCELLUS_MPI
  return true;
#else
  return false;
#endif
}

const Dist& dist() { return g_dist; }

const Dist& dist_init() {
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
  if (!launched || g_started) return g_dist;
#ifdef OCELLUS_MPI
  int flag = 0;
  MPI_Initialized(&flag);
  if (!flag) MPI_Init(nullptr, nullptr);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_dist.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_dist.size);
  g_started = true;
#else
  fail("train: launched by mpirun, but this ocellus was built without OpenMPI (install libopenmpi-dev and rebuild)");
#endif
  return g_dist;
}

void dist_finalize() {
#ifdef OCELLUS_MPI
  if (g_started) MPI_Finalize();
#endif
  g_started = false;
  g_dist = Dist{};
}

void allreduce_sum(float* data, int64_t n) {
  if (g_dist.size <= 1) return;
#ifdef OCELLUS_MPI
  // In chunks: MPI counts are int.
  for (int64_t at = 0; at < n; at += int64_t(1) << 28) {
    const int c = int(std::min<int64_t>(n - at, int64_t(1) << 28));
    MPI_Allreduce(MPI_IN_PLACE, data + at, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
#else
  (void)data, (void)n;
#endif
}

double allreduce_sum(double v) {
  if (g_dist.size <= 1) return v;
#ifdef OCELLUS_MPI
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
  return v;
}

}  // namespace ocellus::train
