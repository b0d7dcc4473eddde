#include "common/resource.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/strings/str_cat.h"

namespace nftproxy {

namespace {

// The accessors of one oneof member, for the kind table.
template <auto Get>
const v1::ObjectMeta& Meta(const v1::Resource& r) {
  return (r.*Get)().metadata();
}
template <auto Mutable>
v1::ObjectMeta* MutableMeta(v1::Resource* r) {
  return (r->*Mutable)()->mutable_metadata();
}

#define NFTPROXY_KIND(KIND, CASE, WORD, MANIFEST, PLURAL, SHORT, FIELD)                                   \
  KindInfo {                                                                                               \
    v1::KIND, v1::Resource::CASE, WORD, MANIFEST, PLURAL, SHORT,                                           \
        &Meta<&v1::Resource::FIELD>, &MutableMeta<&v1::Resource::mutable_##FIELD>                           \
  }

}  // namespace

const std::vector<KindInfo>& Kinds() {
  static const std::vector<KindInfo> kinds = {
      NFTPROXY_KIND(SERVICE, kService, "service", "Service", "services", "svc", service),
      NFTPROXY_KIND(ENDPOINT_SLICE, kEndpointSlice, "endpointslice", "EndpointSlice", "endpointslices", "eps",
                    endpoint_slice),
      NFTPROXY_KIND(WORKLOAD, kWorkload, "workload", "Workload", "workloads", "wl", workload),
  };
  return kinds;
}

#undef NFTPROXY_KIND

const KindInfo* FindKind(v1::Kind kind) {
  for (const KindInfo& k : Kinds()) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

const KindInfo* FindKind(const v1::Resource& r) {
  for (const KindInfo& k : Kinds()) {
    if (k.oneof == r.kind_case()) return &k;
  }
  return nullptr;
}

const KindInfo* KindByWord(absl::string_view word) {
  for (const KindInfo& k : Kinds()) {
    if (word == k.word || word == k.plural || word == k.short_name || word == k.manifest) return &k;
  }
  // Kubernetes users say "endpoints" and "ep" for the endpoints of a service.
  if (word == "endpoints" || word == "ep") return FindKind(v1::ENDPOINT_SLICE);
  return nullptr;
}

const char* KindName(v1::Kind kind) {
  const KindInfo* k = FindKind(kind);
  return k ? k->word : "resource";
}

v1::Kind KindOf(const v1::Resource& r) {
  const KindInfo* k = FindKind(r);
  return k ? k->kind : v1::KIND_UNSPECIFIED;
}

const v1::ObjectMeta& MetaOf(const v1::Resource& r) {
  const KindInfo* k = FindKind(r);
  return k ? k->meta(r) : v1::ObjectMeta::default_instance();
}

v1::ObjectMeta* MutableMetaOf(v1::Resource* r) {
  const KindInfo* k = FindKind(*r);
  return k ? k->mutable_meta(r) : nullptr;
}

std::string Describe(const Key& key) { return absl::StrCat(KindName(key.kind), " ", key.ns, "/", key.name); }

Key KeyOf(const v1::Resource& r) {
  const v1::ObjectMeta& m = MetaOf(r);
  return Key{KindOf(r), m.namespace_().empty() ? kDefaultNamespace : m.namespace_(), m.name()};
}

Key KeyOf(const v1::ResourceRef& ref) {
  return Key{ref.kind(), ref.namespace_().empty() ? kDefaultNamespace : ref.namespace_(), ref.name()};
}

v1::ResourceRef RefOf(const Key& key, uint64_t resource_version) {
  v1::ResourceRef ref;
  ref.set_kind(key.kind);
  ref.set_namespace_(key.ns);
  ref.set_name(key.name);
  ref.set_resource_version(resource_version);
  return ref;
}

v1::Resource ResourceOf(const Key& key) {
  v1::Resource r;
  const KindInfo* k = FindKind(key.kind);
  if (k == nullptr) return r;
  v1::ObjectMeta* m = k->mutable_meta(&r);
  m->set_namespace_(key.ns);
  m->set_name(key.name);
  return r;
}

std::string DeterministicBytes(const google::protobuf::MessageLite& m) {
  // Sized first and written into place: this runs for every resource of a
  // sync, and growing the string as it is written costs more than the write.
  const size_t n = m.ByteSizeLong();
  std::string out(n, '\0');
  google::protobuf::io::ArrayOutputStream array(out.data(), static_cast<int>(n));
  google::protobuf::io::CodedOutputStream coded(&array);
  coded.SetSerializationDeterministic(true);
  m.SerializeWithCachedSizes(&coded);
  return out;
}

bool EndpointReady(const v1::EndpointConditions& c) { return !c.has_ready() || c.ready(); }

bool SelectorMatches(const google::protobuf::Map<std::string, std::string>& selector,
                     const google::protobuf::Map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

int64_t AffinityTimeoutSeconds(const v1::ServiceSpec& spec) {
  if (spec.session_affinity() != v1::ServiceSpec::CLIENT_IP) return 0;
  return spec.has_session_affinity_timeout() ? spec.session_affinity_timeout().seconds()
                                             : kDefaultAffinityTimeoutSeconds;
}

void ClearExplicitDefaults(v1::Resource* r) {
  using S = v1::ServiceSpec;
  auto ports = [](google::protobuf::RepeatedPtrField<v1::EndpointPort>* ps) {
    for (v1::EndpointPort& p : *ps) {
      if (p.protocol() == v1::TCP) p.clear_protocol();
    }
  };
  switch (KindOf(*r)) {
    case v1::SERVICE: {
      S* s = r->mutable_service()->mutable_spec();
      if (s->type() == S::CLUSTER_IP) s->clear_type();
      if (s->external_traffic_policy() == S::CLUSTER) s->clear_external_traffic_policy();
      if (s->internal_traffic_policy() == S::CLUSTER) s->clear_internal_traffic_policy();
      if (s->session_affinity() == S::NONE) s->clear_session_affinity();
      if (s->load_balancing() == S::RANDOM) s->clear_load_balancing();
      for (v1::ServicePort& p : *s->mutable_ports()) {
        if (p.protocol() == v1::TCP) p.clear_protocol();
      }
      break;
    }
    case v1::ENDPOINT_SLICE:
      ports(r->mutable_endpoint_slice()->mutable_ports());
      break;
    case v1::WORKLOAD:
      ports(r->mutable_workload()->mutable_ports());
      break;
    default:
      break;
  }
}

}  // namespace nftproxy
