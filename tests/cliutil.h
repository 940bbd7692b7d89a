#pragma once
// Runs the `ocellus` command the tests were built with and captures what it prints and its exit
// status, so CLI tests check results and exit codes (CTest's PASS_REGULAR_EXPRESSION ignores
// the exit code), and its peak memory (wait4's rusage of that child alone, so tests can bound it).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "testutil.h"

namespace ocellus::test {

struct CliResult {
  int status = -1;   // exit status; -1 when the process did not exit normally (a crash)
  std::string out;   // stdout
  std::string err;   // stderr
  long max_rss_kb = 0;  // peak resident memory of the command, KiB
};

// `ocellus ARGS` through /bin/sh (ARGS is shell text: quote what needs it); env is prepended
// as shell assignments ("OCELLUS_THREADS=abc"); input is its standard input (none when empty).
inline CliResult run_cli(const std::string& args, const std::string& env = "", const std::string& input = "") {
  static int n = 0;
  const std::string base = temp_path("cli" + std::to_string(n++));
  if (!input.empty()) std::ofstream(base + ".in", std::ios::binary) << input;
  const std::string cmd = env + (env.empty() ? "" : " ") + "'" OCELLUS_CLI "' " + args + " >'" + base + ".out' 2>'" +
                          base + ".err' <" + (input.empty() ? "/dev/null" : "'" + base + ".in'");
  CliResult r;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int raw = 0;
  struct rusage ru {};
  const bool waited = pid > 0 && ::wait4(pid, &raw, 0, &ru) == pid;
  r.status = (waited && WIFEXITED(raw)) ? WEXITSTATUS(raw) : -1;
  r.max_rss_kb = ru.ru_maxrss;
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  std::remove((base + ".in").c_str());
  return r;
}

}  // namespace ocellus::test
