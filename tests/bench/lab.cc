#include "tests/bench/lab.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace npxbench {
namespace {

// ---- registry, readable from a signal handler ------------------------------
// Fixed-size arrays of plain chars and ints: the signal handler walks them
// with async-signal-safe calls only (kill, umount2, unlink, getdents64).

constexpr int kMaxProcs = 256;
constexpr int kMaxNetns = 64;
constexpr int kNameLen = 96;

struct ProcSlot {
  volatile pid_t pid;
  char netns[kNameLen];
};
ProcSlot g_procs[kMaxProcs];
char g_netns[kMaxNetns][kNameLen];  // "" = free slot
char g_tmpdir[128];
volatile sig_atomic_t g_cleaning = 0;

void CopyName(char* dst, const std::string& src) {
  size_t n = src.size() < kNameLen - 1 ? src.size() : kNameLen - 1;
  memcpy(dst, src.data(), n);
  dst[n] = 0;
}

void RegisterPid(pid_t pid, const std::string& netns) {
  for (ProcSlot& s : g_procs) {
    if (s.pid == 0) {
      CopyName(s.netns, netns);
      s.pid = pid;
      return;
    }
  }
}

void UnregisterPid(pid_t pid) {
  for (ProcSlot& s : g_procs) {
    if (s.pid == pid) s.pid = 0;
  }
}

// "/run/netns/" + name without allocating.
void NetnsPath(const char* name, char* out, size_t len) {
  const char prefix[] = "/run/netns/";
  size_t i = 0;
  for (; prefix[i] && i + 1 < len; ++i) out[i] = prefix[i];
  for (size_t j = 0; name[j] && i + 1 < len; ++j) out[i++] = name[j];
  out[i] = 0;
}

// What `ip netns del` does: detach the bind mount, remove the file.
void DeleteNetnsFile(const char* name) {
  char path[160];
  NetnsPath(name, path, sizeof(path));
  umount2(path, MNT_DETACH);
  unlink(path);
}

// Removes a directory and the files directly inside it.
// Removes `dir`, its files and (one level down) its subdirectories' files,
// such as a server's state directory. Async-signal-safe.
void RemoveFlatDir(const char* dir, bool recurse = true) {
  if (!dir[0]) return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    alignas(8) char buf[4096];
    for (;;) {
      long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        // struct linux_dirent64: ino(8) off(8) reclen(2) type(1) name[]
        unsigned short reclen;
        memcpy(&reclen, buf + off + 16, sizeof(reclen));
        const char* name = buf + off + 19;
        if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) && unlinkat(fd, name, 0) != 0 &&
            recurse) {
          char sub[512];
          size_t len = 0;
          for (const char* p = dir; *p && len < sizeof(sub) - 2; ++p) sub[len++] = *p;
          sub[len++] = '/';
          for (const char* p = name; *p && len < sizeof(sub) - 1; ++p) sub[len++] = *p;
          sub[len] = 0;
          RemoveFlatDir(sub, false);
        }
        off += reclen;
      }
    }
    close(fd);
  }
  rmdir(dir);
}

void CleanupAsyncSafe() {
  if (g_cleaning) return;
  g_cleaning = 1;
  for (ProcSlot& s : g_procs) {
    if (s.pid > 0) kill(s.pid, SIGKILL);
  }
  for (ProcSlot& s : g_procs) {
    if (s.pid > 0) {
      int st;
      waitpid(s.pid, &st, 0);
      s.pid = 0;
    }
  }
  for (auto& n : g_netns) {
    if (n[0]) {
      DeleteNetnsFile(n);
      n[0] = 0;
    }
  }
  RemoveFlatDir(g_tmpdir);
  g_tmpdir[0] = 0;
}

void OnSignal(int sig) {
  const char msg[] = "\nnftproxy_bench: interrupted, cleaning up namespaces and processes\n";
  ssize_t ignored = write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  CleanupAsyncSafe();
  signal(sig, SIG_DFL);
  raise(sig);
}

void OnExit() { CleanupAsyncSafe(); }

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

double TvSeconds(const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

// Waits up to timeout_s for pid; SIGKILLs it on timeout. Returns the wait
// status; fills rusage.
int WaitWithTimeout(pid_t pid, double timeout_s, bool* timed_out, rusage* ru) {
  *timed_out = false;
  int pfd = PidfdOpen(pid);
  if (pfd >= 0) {
    pollfd p{pfd, POLLIN, 0};
    const double deadline = NowSeconds() + timeout_s;
    for (;;) {
      const double left = deadline - NowSeconds();
      if (left <= 0) {
        *timed_out = true;
        break;
      }
      int r = poll(&p, 1, static_cast<int>(left * 1000) + 1);
      if (r > 0) break;
      if (r < 0 && errno != EINTR) break;
    }
    close(pfd);
  }
  if (*timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (wait4(pid, &status, 0, ru) < 0 && errno == EINTR) {
  }
  return status;
}

std::string ReadFileHead(const std::string& path, size_t max) {
  std::ifstream f(path, std::ios::binary);
  std::string s(max, '\0');
  f.read(&s[0], static_cast<std::streamsize>(max));
  s.resize(static_cast<size_t>(f.gcount()));
  return s;
}

// posix_spawnp with stdin/stdout/stderr redirected, in its own process group.
int SpawnRaw(const std::vector<std::string>& argv, const std::string& in, const std::string& out, pid_t* pid) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in.empty() ? "/dev/null" : in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGHUP);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  int rc = posix_spawnp(pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc;
}

Lab* g_lab = nullptr;

}  // namespace

double NowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

std::string ProcResult::Describe() const {
  if (!started) return "could not start: " + output;
  std::string first = output.substr(0, output.find('\n'));
  if (first.size() > 300) first = first.substr(0, 300) + "...";
  if (timed_out) return absl::StrCat("timed out after ", static_cast<int>(wall_s), " s");
  if (term_signal) return absl::StrCat("killed by signal ", term_signal, ": ", first);
  return absl::StrCat("exit ", exit_code, ": ", first);
}

absl::Status Lab::Init() {
  if (g_lab) return absl::OkStatus();
  g_lab = new Lab();
  g_lab->tmpdir_ = absl::StrCat("/tmp/npx-bench-", getpid());
  if (mkdir(g_lab->tmpdir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", g_lab->tmpdir_, ": ", strerror(errno)));
  }
  CopyName(g_tmpdir, g_lab->tmpdir_);
  g_lab->home_netns_fd_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (g_lab->home_netns_fd_ < 0) return absl::InternalError(absl::StrCat("open /proc/self/ns/net: ", strerror(errno)));
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  atexit(OnExit);
  return absl::OkStatus();
}

Lab& Lab::Get() { return *g_lab; }

absl::StatusOr<std::string> Lab::AddNetns(const std::string& tag) {
  const std::string name = absl::StrCat("npx-bench-", getpid(), "-", tag);
  int slot = -1;
  for (int i = 0; i < kMaxNetns; ++i) {
    if (!g_netns[i][0]) {
      slot = i;
      break;
    }
  }
  if (slot < 0) return absl::ResourceExhaustedError("too many namespaces");
  if (auto s = RunOk("", {"ip", "netns", "add", name}); !s.ok()) return s;
  CopyName(g_netns[slot], name);
  if (auto s = RunOk("", {"ip", "-n", name, "link", "set", "lo", "up"}); !s.ok()) return s;
  return name;
}

void Lab::DelNetns(const std::string& name) {
  for (ProcSlot& s : g_procs) {
    if (s.pid > 0 && name == s.netns) {
      pid_t pid = s.pid;
      kill(pid, SIGKILL);
      int st;
      waitpid(pid, &st, 0);
      s.pid = 0;
    }
  }
  for (auto& n : g_netns) {
    if (n[0] && name == n) {
      DeleteNetnsFile(n);
      n[0] = 0;
    }
  }
}

absl::Status Lab::EnterNetns(const std::string& netns) {
  if (netns.empty()) return absl::OkStatus();
  const std::string path = "/run/netns/" + netns;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  int rc = setns(fd, CLONE_NEWNET);
  int err = errno;
  close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("setns ", netns, ": ", strerror(err)));
  return absl::OkStatus();
}

void Lab::LeaveNetns() {
  if (home_netns_fd_ >= 0) setns(home_netns_fd_, CLONE_NEWNET);
}

ProcResult Lab::Run(const std::string& netns, const std::vector<std::string>& argv, const RunOptions& opts) {
  ProcResult r;
  const std::string out = tmpdir_ + "/run.out";
  if (auto s = EnterNetns(netns); !s.ok()) {
    r.output = std::string(s.message());
    return r;
  }
  pid_t pid = 0;
  rusage ru{};
  const double t0 = NowSeconds();
  int rc = SpawnRaw(argv, opts.stdin_path, out, &pid);
  LeaveNetns();
  if (rc != 0) {
    r.output = absl::StrCat(argv[0], ": ", strerror(rc));
    return r;
  }
  RegisterPid(pid, netns);
  r.started = true;
  int status = WaitWithTimeout(pid, opts.timeout_s, &r.timed_out, &ru);
  r.wall_s = NowSeconds() - t0;
  UnregisterPid(pid);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.term_signal = WTERMSIG(status);
  r.user_s = TvSeconds(ru.ru_utime);
  r.sys_s = TvSeconds(ru.ru_stime);
  r.maxrss_kb = ru.ru_maxrss;
  r.output = ReadFileHead(out, 64 << 10);
  return r;
}

absl::Status Lab::RunOk(const std::string& netns, const std::vector<std::string>& argv, double timeout_s) {
  RunOptions o;
  o.timeout_s = timeout_s;
  ProcResult r = Run(netns, argv, o);
  if (r.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), netns.empty() ? "" : " (in " + netns + ")",
                                          ": ", r.Describe()));
}

absl::StatusOr<pid_t> Lab::Spawn(const std::string& netns, const std::vector<std::string>& argv,
                                 const std::string& log_path) {
  if (auto s = EnterNetns(netns); !s.ok()) return s;
  pid_t pid = 0;
  int rc = SpawnRaw(argv, "", log_path, &pid);
  LeaveNetns();
  if (rc != 0) return absl::InternalError(absl::StrCat("starting ", argv[0], ": ", strerror(rc)));
  RegisterPid(pid, netns);
  return pid;
}

int Lab::Stop(pid_t pid, double timeout_s) {
  kill(pid, SIGTERM);
  bool timed_out = false;
  rusage ru{};
  int status = WaitWithTimeout(pid, timeout_s, &timed_out, &ru);
  UnregisterPid(pid);
  return status;
}

bool Lab::Alive(pid_t pid) const {
  int st;
  if (waitpid(pid, &st, WNOHANG) == 0) return true;
  UnregisterPid(pid);
  return false;
}

void Lab::Cleanup() { CleanupAsyncSafe(); }

CpuTimes ReadCpuTimes(pid_t pid) {
  CpuTimes t;
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t p = s.rfind(')');
  if (p == std::string::npos) return t;
  std::istringstream in(s.substr(p + 2));
  std::string tok;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  // After "pid (comm) ": field 3 is state; utime is field 14, stime 15.
  for (int field = 3; field <= 15 && in >> tok; ++field) {
    if (field == 14) t.user_s = std::stod(tok) / hz;
    if (field == 15) t.sys_s = std::stod(tok) / hz;
  }
  return t;
}

long ReadStatusKb(pid_t pid, const char* field) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string want = std::string(field) + ":";
  while (std::getline(f, line)) {
    if (line.compare(0, want.size(), want) == 0) return std::stol(line.substr(want.size()));
  }
  return 0;
}

}  // namespace npxbench
