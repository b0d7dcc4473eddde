// What the CLI prints: kubectl-style tables, manifests in YAML or JSON (which
// `apply -f` reads back), unified diffs, and the part of the nft ruleset that
// implements one service.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/resource.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::client {

namespace v1 = ::nftproxy::v1;

// Columns padded to the widest cell plus three spaces, as kubectl does.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// A resource as one manifest document: `kind` first, then its fields in
// protobuf's JSON mapping (JSON ends with a newline, YAML is block style,
// and strings that would read back as numbers or booleans are quoted).
std::string ResourceJson(const v1::Resource& r);
std::string ResourceYaml(const v1::Resource& r);
// Several resources: YAML documents separated by `---`, or one JSON
// `{"kind": "List", "items": [...]}`. Both read back with `apply -f`.
std::string ResourcesYaml(const std::vector<v1::Resource>& rs);
std::string ResourcesJson(const std::vector<v1::Resource>& rs);
// One item of ResourcesJson's list, indented for it, without a final newline:
// a list printed as its pages arrive is `{"kind": "List", "items": [` then
// these, comma-separated, then `]}`.
std::string ListItemJson(const v1::Resource& r);
// Any message as JSON (one line when `compact`, else indented by two spaces
// a level, as kubectl prints) or block YAML.
std::string MessageJson(const google::protobuf::Message& m, bool compact = false);
std::string MessageYaml(const google::protobuf::Message& m);

// The resource without what the server assigns (resource version, times);
// an empty namespace becomes "default". What `diff` compares.
v1::Resource WithoutServerFields(const v1::Resource& r);


// The wide table's LB column and describe's "Load balancing": the mode, or
// <none> for an ExternalName service (nothing is programmed for it).
std::string LoadBalancingName(const v1::ServiceSpec& s);

// `get` tables.
std::vector<std::string> TableHeader(v1::Kind kind, bool wide);
std::vector<std::string> TableRow(const v1::Resource& r, bool wide, absl::Time now);

// kubectl's AGE: "45s", "3m12s", "5h4m", "12d", "2y30d".
std::string Age(absl::Duration d);
absl::Time ToTime(const google::protobuf::Timestamp& ts);

// "service/default/web": how `apply` and `delete` name what they did.
std::string RefName(const Key& key);

// A unified diff (3 lines of context) from `a` to `b`, with `---`/`+++`
// headers naming them; "" when the texts are equal.
std::string UnifiedDiff(const std::string& a, const std::string& b, const std::string& a_name,
                        const std::string& b_name);

// From `nft list`-style text: the chains whose names contain "/NS/NAME/"
// (the per-service chains svc4/NS/NAME/..., ext4/..., ...), whole, and from
// every other map, set or chain the elements and rules that mention them.
// "" when nothing matches.
std::string RulesetFor(const std::string& ruleset, const std::string& ns, const std::string& name);

}  // namespace nftproxy::client
