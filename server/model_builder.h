// Builds the dataplane's Model from the validated API state: resolves each
// service's endpoints (from its EndpointSlices, or from the workloads its
// selector matches), readiness, weights and target ports.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <utility>

#include "dataplane/model.h"
#include "server/desired.h"

namespace nftproxy::server {

// The dataplane's view of service ns/name; nullopt when it programs nothing
// (no such service, ExternalName, no frontend). `node_name` marks which
// endpoints are local.
std::optional<dp::Service> BuildService(const Desired& d, const std::string& ns, const std::string& name,
                                        const std::string& node_name);

// Every service; `node` is copied into the model.
dp::Model BuildModel(const Desired& d, const std::string& node_name, const dp::NodeSettings& node);

// The services (ns, name) whose dataplane view a write may have changed:
// the services it wrote, those named by slices it wrote (before and after),
// and the selector services that match a workload it wrote (before or after).
std::set<std::pair<std::string, std::string>> AffectedServices(const Txn& txn);

}  // namespace nftproxy::server
