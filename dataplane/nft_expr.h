// The netlink encoder of the statement IR (ir.h): each statement kind
// becomes the expressions nft emits for the same text.
#pragma once

#include "dataplane/ir.h"

struct nftnl_rule;

namespace nftproxy::dp {

// Appends the expressions of `rule` to `r`.
void EncodeRule(nftnl_rule* r, const RuleStmts& rule);

}  // namespace nftproxy::dp
