#include "server/etcd_log.h"

#include <random>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/crc32c.h"

namespace nftproxy::server {

namespace pb = ::etcdserverpb;

std::string EtcdLog::EntryKey(uint64_t seq) const { return absl::StrFormat("%slog/%020u", prefix_, seq); }

absl::StatusOr<EtcdLog::Head> EtcdLog::ReadHead() {
  absl::StatusOr<EtcdRange> r = client_->Range(HeadKey(), "");
  if (!r.ok()) return r.status();
  Head h;
  h.revision = r->revision;
  if (r->kvs.empty()) return h;
  if (!absl::SimpleAtoi(r->kvs[0].value, &h.seq)) {
    return absl::DataLossError(absl::StrCat("etcd key ", HeadKey(), " holds \"", r->kvs[0].value.substr(0, 40),
                                            "\", not a sequence number: the prefix is not nftproxy's log"));
  }
  h.mod_revision = r->kvs[0].mod_revision;
  return h;
}

namespace {

std::string NewBlobId() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x%08x", rd(), rd(), rd());
}

}  // namespace

absl::Status EtcdLog::WriteChunks(const std::string& prefix, const std::string& bytes, size_t* chunks) {
  // At least one chunk, so that an empty state reads back as one.
  size_t n = 0, off = 0;
  do {
    pb::TxnRequest txn;
    pb::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key(absl::StrFormat("%s%06u", prefix, n));
    put->set_value(bytes.substr(off, kChunkSize));
    absl::StatusOr<pb::TxnResponse> r = client_->Txn(txn);
    if (!r.ok()) return r.status();
    ++n;
    off += kChunkSize;
  } while (off < bytes.size());
  *chunks = n;
  return absl::OkStatus();
}

absl::StatusOr<std::string> EtcdLog::ReadChunks(const std::string& prefix, size_t chunks, size_t size, uint32_t crc,
                                                int64_t revision, const std::string& what) {
  absl::StatusOr<EtcdRange> r = client_->Range(prefix, EtcdPrefixEnd(prefix), revision);
  if (!r.ok()) return r.status();
  std::string out;
  out.reserve(size);
  for (const EtcdKeyValue& kv : r->kvs) out += kv.value;
  if (r->kvs.size() != chunks || out.size() != size || Crc32c(out) != crc) {
    return absl::DataLossError(absl::StrCat(what, " (", prefix, "*) has ", r->kvs.size(), " of ", chunks,
                                            " chunks, ", out.size(), " of ", size, " bytes",
                                            out.size() == size ? ", and a wrong checksum" : ""));
  }
  return out;
}

absl::StatusOr<int64_t> EtcdLog::Append(const Head& after, const std::string& change) {
  std::string entry;
  std::string blob;
  if (change.size() <= kInlineLimit) {
    entry = "I" + change;
  } else {
    // Named after the entry it is for, so that trimming deletes it (and the
    // chunks of writers that lost the race for that entry) by range.
    blob = absl::StrFormat("%020u-%s", after.seq + 1, NewBlobId());
    size_t chunks = 0;
    if (absl::Status s = WriteChunks(absl::StrCat(BlobPrefix(), blob, "/"), change, &chunks); !s.ok()) {
      DeleteBlob(blob).IgnoreError();
      return s;
    }
    entry = absl::StrCat("B ", blob, " ", chunks, " ", change.size(), " ", Crc32c(change));
  }
  pb::TxnRequest txn;
  pb::Compare* cmp = txn.add_compare();
  cmp->set_key(HeadKey());
  cmp->set_target(pb::Compare::MOD);
  cmp->set_result(pb::Compare::EQUAL);
  cmp->set_mod_revision(after.mod_revision);  // 0: the head does not exist yet
  pb::PutRequest* head = txn.add_success()->mutable_request_put();
  head->set_key(HeadKey());
  head->set_value(absl::StrCat(after.seq + 1));
  pb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(EntryKey(after.seq + 1));
  put->set_value(entry);
  absl::StatusOr<pb::TxnResponse> r = client_->Txn(txn);
  if (!r.ok()) {
    // No answer is not a refusal: the entry may be committed. (The chunks
    // stay either way: an entry may name them.)
    absl::StatusOr<EtcdRange> got = client_->Range(EntryKey(after.seq + 1), "");
    if (got.ok() && !got->kvs.empty()) {
      if (got->kvs[0].value == entry) return got->kvs[0].mod_revision;
      if (!blob.empty()) DeleteBlob(blob).IgnoreError();
      return absl::AbortedError(absl::StrCat("another writer changed the state first (entry ", after.seq + 1,
                                             " is another change); read it again and retry"));
    }
    return absl::Status(r.status().code(),
                        absl::StrCat(r.status().message(),
                                     "; the outcome is unknown: if etcd commits the change later, every node "
                                     "applies it"));
  }
  if (!r->succeeded()) {
    if (!blob.empty()) DeleteBlob(blob).IgnoreError();
    return absl::AbortedError(absl::StrCat("another writer changed the state first (the log's head moved past entry ",
                                           after.seq, "); read it again and retry"));
  }
  return r->header().revision();
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdLog::ReadAfter(uint64_t seq, int64_t limit, int64_t* revision) {
  absl::StatusOr<EtcdRange> r = client_->Range(EntryKey(seq + 1), EtcdPrefixEnd(LogPrefix()), *revision, limit);
  if (!r.ok()) return r.status();
  *revision = r->revision;
  return std::move(r->kvs);
}

absl::Status EtcdLog::DeleteBlob(const std::string& blob) {
  pb::TxnRequest txn;
  pb::DeleteRangeRequest* del = txn.add_success()->mutable_request_delete_range();
  const std::string prefix = absl::StrCat(BlobPrefix(), blob, "/");
  del->set_key(prefix);
  del->set_range_end(EtcdPrefixEnd(prefix));
  return client_->Txn(txn).status();
}

absl::StatusOr<std::string> EtcdLog::Resolve(const EtcdKeyValue& entry) {
  const std::string& v = entry.value;
  if (!v.empty() && v[0] == 'I') return v.substr(1);
  std::vector<absl::string_view> f = absl::StrSplit(v, ' ');
  size_t chunks = 0, size = 0;
  uint32_t crc = 0;
  if (f.size() != 5 || f[0] != "B" || !absl::SimpleAtoi(f[2], &chunks) || !absl::SimpleAtoi(f[3], &size) ||
      !absl::SimpleAtoi(f[4], &crc)) {
    return absl::DataLossError(absl::StrCat("etcd key ", entry.key, ": not a log entry nftproxy wrote"));
  }
  return ReadChunks(absl::StrCat(BlobPrefix(), f[1], "/"), chunks, size, crc, 0,
                    absl::StrCat("etcd key ", entry.key, ": its change"));
}

absl::StatusOr<std::optional<EtcdLog::Base>> EtcdLog::ReadBase(int64_t* revision) {
  absl::StatusOr<EtcdRange> r = client_->Range(BaseKey(), "", *revision);
  if (!r.ok()) return r.status();
  *revision = r->revision;
  if (r->kvs.empty()) return std::optional<Base>();
  std::vector<absl::string_view> f = absl::StrSplit(r->kvs[0].value, ' ');
  Base b;
  if (f.size() != 6 || f[0] != "S" || !absl::SimpleAtoi(f[1], &b.seq) || !absl::SimpleAtoi(f[2], &b.revision) ||
      !absl::SimpleAtoi(f[3], &b.chunks) || !absl::SimpleAtoi(f[4], &b.size) || !absl::SimpleAtoi(f[5], &b.crc)) {
    return absl::DataLossError(absl::StrCat("etcd key ", BaseKey(), " holds \"", r->kvs[0].value.substr(0, 60),
                                            "\", not a base nftproxy wrote"));
  }
  return std::optional<Base>(b);
}

absl::StatusOr<std::string> EtcdLog::ReadBaseState(const Base& base, int64_t revision) {
  return ReadChunks(absl::StrFormat("%s%020u/", BaseBlobPrefix(), base.seq), base.chunks, base.size, base.crc,
                    revision, absl::StrCat("etcd key ", BaseKey(), ": its state"));
}

absl::Status EtcdLog::Trim(uint64_t seq, int64_t revision, const std::string& state) {
  // The chunks first: nothing refers to them until the transaction below.
  // (Two nodes trimming at one entry write the same state to the same keys.)
  size_t chunks = 0;
  if (absl::Status s = WriteChunks(absl::StrFormat("%s%020u/", BaseBlobPrefix(), seq), state, &chunks); !s.ok()) {
    return s;
  }
  pb::TxnRequest txn;
  pb::Compare* cmp = txn.add_compare();
  cmp->set_key(EntryKey(seq));
  cmp->set_target(pb::Compare::MOD);
  cmp->set_result(pb::Compare::EQUAL);
  cmp->set_mod_revision(revision);
  pb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(BaseKey());
  put->set_value(absl::StrCat("S ", seq, " ", revision, " ", chunks, " ", state.size(), " ", Crc32c(state)));
  auto del = [&txn](const std::string& from, const std::string& to) {
    pb::DeleteRangeRequest* d = txn.add_success()->mutable_request_delete_range();
    d->set_key(from);
    d->set_range_end(to);
  };
  del(LogPrefix(), EntryKey(seq + 1));
  del(BlobPrefix(), absl::StrFormat("%s%020u", BlobPrefix(), seq + 1));
  del(BaseBlobPrefix(), absl::StrFormat("%s%020u", BaseBlobPrefix(), seq));
  absl::StatusOr<pb::TxnResponse> r = client_->Txn(txn);
  if (!r.ok()) return r.status();
  if (!r->succeeded()) {
    // This entry is gone (a later base) or another: the chunks stay for the
    // next trim to delete (another node may have trimmed at this entry too).
    return absl::FailedPreconditionError(
        absl::StrCat("entry ", seq, " (revision ", revision, ") is no longer in the log: it was trimmed already"));
  }
  return absl::OkStatus();
}

}  // namespace nftproxy::server
