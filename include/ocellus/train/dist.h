#pragma once
// Data-parallel training across processes with OpenMPI: `mpirun -np N ocellus train ...` runs N
// processes; each computes the gradients of its share of every batch, the gradients and losses
// are summed across processes before the optimizer step, so every process applies the same
// update and the losses are those of one process with the same global batch. Built without
// MPI, or started without mpirun, everything is one local process.
#include <cstdint>

namespace ocellus::train {

struct Dist {
  int rank = 0, size = 1;
  bool main() const { return rank == 0; }
};

// Starts MPI when this process was launched by mpirun (and ocellus was built with it).
const Dist& dist_init();
const Dist& dist();       // the current state (one local process until dist_init)
void dist_finalize();
bool dist_built();        // whether this build has MPI
void allreduce_sum(float* data, int64_t n);  // in place, across processes
double allreduce_sum(double v);

}  // namespace ocellus::train
