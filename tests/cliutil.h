#pragma once
// Runs the `ocellus` command the tests were built with and captures what it prints and its exit
// status, so CLI tests check results and exit codes (CTest's PASS_REGULAR_EXPRESSION ignores
// the exit code).
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "testutil.h"

namespace ocellus::test {

struct CliResult {
  int status = -1;   // exit status; -1 when the process did not exit normally (a crash)
  std::string out;   // stdout
  std::string err;   // stderr
};

// `ocellus ARGS` through /bin/sh (ARGS is shell text: quote what needs it); env is prepended
// as shell assignments ("OCELLUS_THREADS=abc").
inline CliResult run_cli(const std::string& args, const std::string& env = "") {
  static int n = 0;
  const std::string base = temp_path("cli" + std::to_string(n++));
  const std::string cmd = env + (env.empty() ? "" : " ") + "'" OCELLUS_CLI "' " + args + " >'" + base + ".out' 2>'" +
                          base + ".err' </dev/null";
  const int raw = std::system(cmd.c_str());
  CliResult r;
  r.status = (raw != -1 && WIFEXITED(raw)) ? WEXITSTATUS(raw) : -1;
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

}  // namespace ocellus::test
