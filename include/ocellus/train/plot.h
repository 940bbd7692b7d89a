#pragma once
// The loss curve of a training run as a PNG, drawn from its metrics log (so a resumed run's
// curve covers the whole run, not only the steps after the resume).
#include <string>
#include <vector>

namespace ocellus::train {

// The losses a metrics log (JSON lines with "loss") holds, in order.
std::vector<double> logged_losses(const std::string& metrics_path);
// A line chart of the losses (640 x 320); nothing is written for none.
void draw_loss_curve(const std::vector<double>& losses, const std::string& png_path);

}  // namespace ocellus::train
