#include "client/completion.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace nftproxy::client {
namespace {

std::string Words(const std::vector<std::string>& w) { return absl::StrJoin(w, " "); }

std::string Bash(const CompletionSpec& spec) {
  std::vector<std::string> names;
  for (const auto& c : spec.commands) names.push_back(c.name);
  std::string per_command;
  for (const auto& c : spec.commands) {
    absl::StrAppend(&per_command, "    ", c.name, ") flags=\"", Words(c.flags), "\"; formats=\"", Words(c.formats),
                    "\"; first=\"", c.first, "\";;\n");
  }
  return absl::StrCat(R"SH(# bash completion for nftproxy; load with: source <(nftproxy completion bash)
_nftproxy_names() {
  # Resource names from the server the command line names, quietly.
  local kind="$1" out
  out=$("${COMP_WORDS[0]}" get "$kind" -o name --request-timeout 2s ${_nftproxy_server:+--server "$_nftproxy_server"} \
        ${_nftproxy_ns:+-n "$_nftproxy_ns"} 2>/dev/null) || return
  local line
  for line in $out; do printf '%s\n' "${line##*/}"; done
}

_nftproxy() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev=""
  (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
  local commands=")SH", Words(names), R"SH("
  local kinds=")SH", Words(spec.kinds), R"SH("
  local value_flags=" )SH", Words(spec.value_flags), R"SH( "
  local global_flags=")SH", Words(spec.global_flags), R"SH("
  local cmd="" kind="" npos=0 i w
  _nftproxy_server="" _nftproxy_ns=""
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w="${COMP_WORDS[i]}"
    case "$w" in
      --server=*) _nftproxy_server="${w#*=}" ;;
      --namespace=*|-n=*) _nftproxy_ns="${w#*=}" ;;
      -*)
        if [[ "$value_flags" == *" $w "* ]]; then
          case "$w" in
            --server) _nftproxy_server="${COMP_WORDS[i+1]}" ;;
            -n|--namespace) _nftproxy_ns="${COMP_WORDS[i+1]}" ;;
          esac
          (( i++ ))
        fi ;;
      *)
        if [[ -z "$cmd" ]]; then cmd="$w"; else (( npos++ )); (( npos == 1 )) && kind="$w"; fi ;;
    esac
  done
  local flags="$global_flags" formats="" first=""
  case "$cmd" in
)SH", per_command, R"SH(  esac
  case "$prev" in
    -o|--output) COMPREPLY=( $(compgen -W "$formats" -- "$cur") ); return 0 ;;
    -f|--filename) COMPREPLY=( $(compgen -f -- "$cur") ); return 0 ;;
  esac
  if [[ "$value_flags" == *" $prev "* ]]; then COMPREPLY=(); return 0; fi
  if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "$flags" -- "$cur") ); return 0; fi
  if [[ -z "$cmd" ]]; then COMPREPLY=( $(compgen -W "$commands" -- "$cur") ); return 0; fi
  local candidates=""
  if (( npos == 0 )); then
    case "$first" in
      kind) candidates="$kinds all" ;;
      service-kind) candidates="services svc service" ;;
      delete-kind) candidates="$kinds" ;;
      shell) candidates="bash zsh fish" ;;
    esac
  elif [[ "$first" == kind || "$first" == service-kind || "$first" == delete-kind ]] && [[ "$kind" != *,* && "$kind" != all ]]; then
    [[ "$cmd" == watch ]] || candidates="$(_nftproxy_names "$kind")"
  fi
  COMPREPLY=( $(compgen -W "$candidates" -- "$cur") )
  return 0
}
complete -F _nftproxy nftproxy
)SH");
}

std::string Zsh(const CompletionSpec& spec) {
  // zsh runs bash completion functions through bashcompinit.
  return absl::StrCat(
      "#compdef nftproxy\n# zsh completion for nftproxy; load with: source <(nftproxy completion zsh)\n"
      "autoload -U +X bashcompinit && bashcompinit\n",
      Bash(spec));
}

std::string Fish(const CompletionSpec& spec) {
  std::string out = "# fish completion for nftproxy; load with: nftproxy completion fish | source\n"
                    "complete -c nftproxy -f\n";
  std::vector<std::string> names;
  for (const auto& c : spec.commands) names.push_back(c.name);
  for (const auto& c : spec.commands) {
    absl::StrAppend(&out, "complete -c nftproxy -n '__fish_use_subcommand' -a ", c.name, " -d '",
                    absl::StrReplaceAll(c.summary, {{"'", "\\'"}}), "'\n");
    const std::string when = absl::StrCat("__fish_seen_subcommand_from ", c.name);
    if (!c.formats.empty()) {
      absl::StrAppend(&out, "complete -c nftproxy -n '", when, "' -s o -l output -x -a '", Words(c.formats), "'\n");
    }
    if (c.first == "kind" || c.first == "delete-kind") {
      absl::StrAppend(&out, "complete -c nftproxy -n '", when, "' -a '", Words(spec.kinds),
                      c.first == "kind" ? " all" : "", "'\n");
    } else if (c.first == "service-kind") {
      absl::StrAppend(&out, "complete -c nftproxy -n '", when, "' -a 'services svc'\n");
    } else if (c.first == "shell") {
      absl::StrAppend(&out, "complete -c nftproxy -n '", when, "' -a 'bash zsh fish'\n");
    }
    for (const std::string& f : c.flags) {
      if (f.rfind("--", 0) == 0) {
        absl::StrAppend(&out, "complete -c nftproxy -n '", when, "' -l ", f.substr(2), "\n");
      }
    }
  }
  absl::StrAppend(&out, "complete -c nftproxy -s f -l filename -r -F\n");
  return out;
}

}  // namespace

absl::StatusOr<std::string> CompletionScript(absl::string_view shell, const CompletionSpec& spec) {
  if (shell == "bash") return Bash(spec);
  if (shell == "zsh") return Zsh(spec);
  if (shell == "fish") return Fish(spec);
  return absl::InvalidArgumentError(absl::StrCat("completion: unknown shell \"", shell, "\" (bash, zsh or fish)"));
}

}  // namespace nftproxy::client
