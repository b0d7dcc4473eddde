// Builds the dataplane's Model from the validated API state: resolves each
// service's endpoints (from its EndpointSlices, or from the workloads its
// selector matches), readiness, weights and target ports.
#pragma once

#include <string>

#include "dataplane/model.h"
#include "server/store.h"

namespace nftproxy::server {

// `node_name` marks which endpoints are local; `node` is copied into the model.
dp::Model BuildModel(const State& state, const std::string& node_name,
                     const dp::NodeSettings& node);

}  // namespace nftproxy::server
