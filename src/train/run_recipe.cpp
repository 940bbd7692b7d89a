// The recipe runner: its objective, the one trainer loop, then the loss curve and the export.
#include <memory>

#include "ocellus/train/dist.h"
#include "ocellus/train/next_token.h"
#include "ocellus/train/plot.h"
#include "ocellus/train/siglip.h"
#include "ocellus/train/trainer.h"

namespace ocellus::train {

TrainResult run_recipe(const Recipe& r, Start start, const std::function<void(const StepStats&)>& on_step, int64_t stop_after) {
  const std::unique_ptr<Objective> objective = r.objective == "siglip" ? siglip_objective(r) : next_token_objective(r);
  TrainResult res = Trainer(r, *objective).run(start, on_step, stop_after);
  const bool finished = res.first_step + int64_t(res.losses.size()) == r.steps;  // not stopped early
  if (!finished || !dist().main()) return res;  // the first process writes the results
  // The curve over the whole run (resumed runs included), and the model.
  draw_loss_curve(metrics_path(r), r.out + "/loss.png");
  objective->export_model(r.out, res);
  return res;
}

}  // namespace ocellus::train
