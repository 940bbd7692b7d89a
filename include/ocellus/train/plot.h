#pragma once
// The loss curve of a training run as a PNG, drawn from its metrics log (so a resumed run's
// curve covers the whole run, not only the steps after the resume).
#include <string>

namespace ocellus::train {

// A line chart (640 x 320) of the losses a metrics log (JSON lines with "loss") holds, in order;
// nothing is written for none.
void draw_loss_curve(const std::string& metrics_path, const std::string& png_path);

}  // namespace ocellus::train
