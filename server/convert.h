// Builds the dataplane's Model from the validated API state: resolves each
// service's endpoints (from its EndpointSlices, or from the workloads its
// selector matches), readiness, weights and target ports.
#pragma once

#include "dataplane/model.h"
#include "server/store.h"

namespace nftproxy::server {

dp::Model BuildModel(const State& state);

}  // namespace nftproxy::server
