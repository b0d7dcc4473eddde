// The seam between the server and the kernel. The server owns the desired
// state and hands the dataplane a complete Model; the dataplane makes the
// kernel match it atomically. Tests of the server use a fake.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "dataplane/model.h"

namespace nftproxy::dp {

struct ApplyResult {
  bool changed = false;   // false: the kernel already matched, nothing was sent
  bool full = false;      // the whole table was replaced
  uint32_t messages = 0;  // netlink messages in the batch
  int flows_deleted = 0;  // UDP conntrack entries of removed endpoints
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  // Makes the kernel match `model`, all or nothing. On error the kernel and
  // the dataplane's idea of it are unchanged, and the message names the
  // service that caused it where the kernel says which message failed.
  virtual absl::Status Apply(const Model& model, ApplyResult* result) = 0;

  // The nft text `model` compiles to, without touching the kernel.
  virtual std::string Render(const Model& model) const = 0;

  // The nft text of what was last committed ("" before the first commit).
  virtual std::string Installed() const = 0;

  // "inet <name>".
  virtual std::string Table() const = 0;
};

}  // namespace nftproxy::dp
