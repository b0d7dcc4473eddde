// The libmnl shim of the static build (dataplane/mnl/mnl.cc) against the
// libmnl API's contract: alignment and padding, nested attributes,
// validation, message walking, batches, mnl_cb_run's handling of acks,
// errors, dumps and foreign messages, and a real netlink socket.
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace {

// A 4-byte aligned buffer filled with 0xAA, so padding that is not zeroed
// shows.
struct Buf {
  alignas(8) char bytes[4096];
  Buf() { memset(bytes, 0xAA, sizeof(bytes)); }
  nlmsghdr* Msg() { return mnl_nlmsg_put_header(bytes); }
};

nlattr* AttrAt(nlmsghdr* nlh, size_t offset) {
  return reinterpret_cast<nlattr*>(static_cast<char*>(mnl_nlmsg_get_payload(nlh)) + offset);
}

TEST(MnlNlmsg, HeaderAndExtraHeader) {
  Buf b;
  nlmsghdr* nlh = b.Msg();
  EXPECT_EQ(nlh->nlmsg_len, MNL_NLMSG_HDRLEN);
  EXPECT_EQ(MNL_NLMSG_HDRLEN, 16u);
  EXPECT_EQ(nlh->nlmsg_type, 0);
  EXPECT_EQ(nlh->nlmsg_seq, 0u);
  EXPECT_EQ(mnl_nlmsg_get_payload_len(nlh), 0u);
  auto* extra = static_cast<unsigned char*>(mnl_nlmsg_put_extra_header(nlh, 5));
  EXPECT_EQ(static_cast<void*>(extra), mnl_nlmsg_get_payload(nlh));
  EXPECT_EQ(nlh->nlmsg_len, 16u + 8u);  // 5 padded to 8
  for (int i = 0; i < 8; ++i) EXPECT_EQ(extra[i], 0) << i;
  EXPECT_EQ(mnl_nlmsg_get_payload_len(nlh), 8u);
  EXPECT_EQ(mnl_nlmsg_get_payload_offset(nlh, 5), static_cast<char*>(mnl_nlmsg_get_payload(nlh)) + 8);
  EXPECT_EQ(mnl_nlmsg_get_payload_tail(nlh), b.bytes + 24);
  EXPECT_EQ(mnl_nlmsg_size(10), 26u);
}

TEST(MnlAttr, PutAlignsAndZeroesPadding) {
  Buf b;
  nlmsghdr* nlh = b.Msg();
  mnl_attr_put_u8(nlh, 1, 0x7f);
  EXPECT_EQ(nlh->nlmsg_len, 16u + 8u);
  nlattr* a = AttrAt(nlh, 0);
  EXPECT_EQ(a->nla_len, 5);  // header + unpadded payload
  EXPECT_EQ(mnl_attr_get_type(a), 1);
  EXPECT_EQ(mnl_attr_get_payload_len(a), 1);
  EXPECT_EQ(mnl_attr_get_u8(a), 0x7f);
  const auto* pad = reinterpret_cast<const unsigned char*>(a) + 5;
  EXPECT_EQ(pad[0], 0);
  EXPECT_EQ(pad[1], 0);
  EXPECT_EQ(pad[2], 0);

  mnl_attr_put_str(nlh, 2, "abc");
  nlattr* s = mnl_attr_next(a);
  EXPECT_EQ(s->nla_len, 7);
  EXPECT_EQ(std::string(mnl_attr_get_str(s), mnl_attr_get_payload_len(s)), "abc");
  EXPECT_EQ(reinterpret_cast<unsigned char*>(s)[7], 0);  // padding
  mnl_attr_put_strz(nlh, 3, "abc");
  nlattr* z = mnl_attr_next(s);
  EXPECT_EQ(z->nla_len, 8);
  EXPECT_STREQ(mnl_attr_get_str(z), "abc");

  // A u64 at an offset that is 4- but not 8-aligned reads back whole.
  mnl_attr_put_u64(nlh, 4, 0x0102030405060708ull);
  nlattr* w = mnl_attr_next(z);
  EXPECT_EQ(w->nla_len, 12);
  EXPECT_EQ(mnl_attr_get_u64(w), 0x0102030405060708ull);
  mnl_attr_put_u16(nlh, 5, 0xbeef);
  mnl_attr_put_u32(nlh, 6, 0xdeadbeef);
  nlattr* h = mnl_attr_next(w);
  EXPECT_EQ(mnl_attr_get_u16(h), 0xbeef);
  EXPECT_EQ(mnl_attr_get_u32(mnl_attr_next(h)), 0xdeadbeefu);
  EXPECT_EQ(nlh->nlmsg_len, 16u + 8 + 8 + 8 + 12 + 8 + 8);
  EXPECT_EQ(static_cast<void*>(mnl_attr_next(mnl_attr_next(h))), mnl_nlmsg_get_payload_tail(nlh));

  // The type hides the flag bits.
  a->nla_type = NLA_F_NESTED | NLA_F_NET_BYTEORDER | 9;
  EXPECT_EQ(mnl_attr_get_type(a), 9);
}

TEST(MnlAttr, PutCheckRefusesWhatDoesNotFit) {
  Buf b;
  nlmsghdr* nlh = b.Msg();
  EXPECT_TRUE(mnl_attr_put_u32_check(nlh, 24, 1, 7));  // 16 + 8: exactly full
  EXPECT_EQ(nlh->nlmsg_len, 24u);
  EXPECT_FALSE(mnl_attr_put_u8_check(nlh, 24, 2, 1));
  EXPECT_FALSE(mnl_attr_put_strz_check(nlh, 31, 2, "abc"));
  EXPECT_TRUE(mnl_attr_put_strz_check(nlh, 32, 2, "abc"));
  EXPECT_EQ(nlh->nlmsg_len, 32u);
  EXPECT_EQ(mnl_attr_nest_start_check(nlh, 35, 3), nullptr);
  EXPECT_NE(mnl_attr_nest_start_check(nlh, 36, 3), nullptr);
}

struct Seen {
  std::vector<uint16_t> types;
  int stop_at = -1;   // return MNL_CB_STOP on this type
  int error_at = -1;  // return MNL_CB_ERROR on this type
};

int Collect(const nlattr* a, void* data) {
  auto* s = static_cast<Seen*>(data);
  s->types.push_back(mnl_attr_get_type(a));
  if (mnl_attr_get_type(a) == s->stop_at) return MNL_CB_STOP;
  if (mnl_attr_get_type(a) == s->error_at) return MNL_CB_ERROR;
  return MNL_CB_OK;
}

TEST(MnlAttr, NestedAttributes) {
  Buf b;
  nlmsghdr* nlh = b.Msg();
  mnl_nlmsg_put_extra_header(nlh, 4);
  mnl_attr_put_u32(nlh, 1, 11);
  nlattr* outer = mnl_attr_nest_start(nlh, 2);
  EXPECT_EQ(outer->nla_type, NLA_F_NESTED | 2);
  EXPECT_EQ(mnl_attr_get_type(outer), 2);
  mnl_attr_put_u8(nlh, 3, 1);
  nlattr* inner = mnl_attr_nest_start(nlh, 4);
  mnl_attr_put_str(nlh, 5, "x");
  mnl_attr_nest_end(nlh, inner);
  mnl_attr_nest_end(nlh, outer);
  mnl_attr_put_u16(nlh, 6, 3);
  EXPECT_EQ(inner->nla_len, 4 + 8);
  EXPECT_EQ(outer->nla_len, 4 + 8 + 12);

  Seen top;
  EXPECT_EQ(mnl_attr_parse(nlh, 4, Collect, &top), MNL_CB_OK);
  EXPECT_EQ(top.types, (std::vector<uint16_t>{1, 2, 6}));
  Seen in_outer;
  EXPECT_EQ(mnl_attr_parse_nested(outer, Collect, &in_outer), MNL_CB_OK);
  EXPECT_EQ(in_outer.types, (std::vector<uint16_t>{3, 4}));
  EXPECT_EQ(mnl_attr_validate(outer, MNL_TYPE_NESTED), 0);
  Seen in_inner;
  EXPECT_EQ(mnl_attr_parse_payload(mnl_attr_get_payload(inner), mnl_attr_get_payload_len(inner), Collect, &in_inner),
            MNL_CB_OK);
  EXPECT_EQ(in_inner.types, (std::vector<uint16_t>{5}));

  // Walking with ok/next (what the C macro mnl_attr_for_each does) sees
  // the same attributes.
  std::vector<uint16_t> walked;
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, 4));
       mnl_attr_ok(a, static_cast<int>(tail - reinterpret_cast<const char*>(a))); a = mnl_attr_next(a)) {
    walked.push_back(mnl_attr_get_type(a));
  }
  EXPECT_EQ(walked, top.types);

  // Cancelling a nest takes it and everything in it back.
  const uint32_t before = nlh->nlmsg_len;
  nlattr* gone = mnl_attr_nest_start(nlh, 7);
  mnl_attr_put_u32(nlh, 8, 1);
  mnl_attr_nest_cancel(nlh, gone);
  EXPECT_EQ(nlh->nlmsg_len, before);
}

TEST(MnlAttr, ParseStopsOnCallbackVerdict) {
  Buf b;
  nlmsghdr* nlh = b.Msg();
  for (uint16_t t = 1; t <= 4; ++t) mnl_attr_put_u32(nlh, t, t);
  Seen stop;
  stop.stop_at = 2;
  EXPECT_EQ(mnl_attr_parse(nlh, 0, Collect, &stop), MNL_CB_STOP);
  EXPECT_EQ(stop.types, (std::vector<uint16_t>{1, 2}));
  Seen err;
  err.error_at = 3;
  EXPECT_EQ(mnl_attr_parse(nlh, 0, Collect, &err), MNL_CB_ERROR);
  EXPECT_EQ(err.types, (std::vector<uint16_t>{1, 2, 3}));
  // A last attribute that claims more than the message holds is not visited.
  AttrAt(nlh, 24)->nla_len = 200;
  Seen cut;
  EXPECT_EQ(mnl_attr_parse(nlh, 0, Collect, &cut), MNL_CB_OK);
  EXPECT_EQ(cut.types, (std::vector<uint16_t>{1, 2, 3}));
}

TEST(MnlAttr, OkRejectsShortAndOverlongAttributes) {
  alignas(4) char raw[16] = {};
  auto* a = reinterpret_cast<nlattr*>(raw);
  a->nla_len = 8;
  EXPECT_TRUE(mnl_attr_ok(a, 8));
  EXPECT_TRUE(mnl_attr_ok(a, 16));
  EXPECT_FALSE(mnl_attr_ok(a, 7));  // longer than what is left
  EXPECT_FALSE(mnl_attr_ok(a, 3));  // not even a header left
  a->nla_len = 3;                   // shorter than its own header
  EXPECT_FALSE(mnl_attr_ok(a, 16));
  a->nla_len = 4;
  EXPECT_TRUE(mnl_attr_ok(a, 4));
  a->nla_len = 5;
  EXPECT_EQ(reinterpret_cast<char*>(mnl_attr_next(a)) - raw, 8);
}

// An attribute of `type` with `len` payload bytes of `fill`.
nlattr* Make(Buf* b, size_t len, char fill, uint16_t type = 1) {
  nlmsghdr* nlh = b->Msg();
  std::string payload(len, fill);
  mnl_attr_put(nlh, type, len, payload.data());
  return AttrAt(nlh, 0);
}

int ValidateErrno(const nlattr* a, mnl_attr_data_type t) {
  errno = 0;
  if (mnl_attr_validate(a, t) == 0) return 0;
  return errno;
}

TEST(MnlAttr, ValidateChecksSizesAndStrings) {
  Buf b;
  EXPECT_EQ(ValidateErrno(Make(&b, 4, 1), MNL_TYPE_U32), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 2, 1), MNL_TYPE_U32), ERANGE);  // too short
  EXPECT_EQ(ValidateErrno(Make(&b, 8, 1), MNL_TYPE_U32), ERANGE);  // too long
  EXPECT_EQ(ValidateErrno(Make(&b, 1, 1), MNL_TYPE_U8), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 2, 1), MNL_TYPE_U8), ERANGE);
  EXPECT_EQ(ValidateErrno(Make(&b, 2, 1), MNL_TYPE_U16), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 8, 1), MNL_TYPE_U64), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 4, 1), MNL_TYPE_U64), ERANGE);
  EXPECT_EQ(ValidateErrno(Make(&b, 8, 1), MNL_TYPE_MSECS), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 0, 0), MNL_TYPE_FLAG), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 1, 0), MNL_TYPE_FLAG), ERANGE);
  EXPECT_EQ(ValidateErrno(Make(&b, 3, 'a'), MNL_TYPE_STRING), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 0, 'a'), MNL_TYPE_STRING), ERANGE);
  EXPECT_EQ(ValidateErrno(Make(&b, 3, 'a'), MNL_TYPE_NUL_STRING), EINVAL);  // no terminator
  EXPECT_EQ(ValidateErrno(Make(&b, 0, 'a'), MNL_TYPE_NUL_STRING), ERANGE);
  EXPECT_EQ(ValidateErrno(Make(&b, 1, '\0'), MNL_TYPE_NUL_STRING), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 0, 0), MNL_TYPE_NESTED), 0);  // an empty nest
  EXPECT_EQ(ValidateErrno(Make(&b, 2, 0), MNL_TYPE_NESTED), ERANGE);
  EXPECT_EQ(ValidateErrno(Make(&b, 7, 0), MNL_TYPE_BINARY), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 7, 0), MNL_TYPE_UNSPEC), 0);
  EXPECT_EQ(ValidateErrno(Make(&b, 4, 0), MNL_TYPE_MAX), EINVAL);
  // validate2: an explicit size.
  errno = 0;
  EXPECT_EQ(mnl_attr_validate2(Make(&b, 6, 0), MNL_TYPE_BINARY, 6), 0);
  EXPECT_EQ(mnl_attr_validate2(Make(&b, 5, 0), MNL_TYPE_BINARY, 6), -1);
  EXPECT_EQ(errno, ERANGE);
  errno = 0;
  EXPECT_EQ(mnl_attr_validate2(Make(&b, 7, 0), MNL_TYPE_BINARY, 6), -1);
  EXPECT_EQ(errno, ERANGE);
}

TEST(MnlAttr, TypeValid) {
  Buf b;
  EXPECT_EQ(mnl_attr_type_valid(Make(&b, 4, 0, 5), 5), 1);
  errno = 0;
  EXPECT_EQ(mnl_attr_type_valid(Make(&b, 4, 0, 6), 5), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
}

// Appends a message of `type` with `payload` bytes (not a multiple of 4:
// the next one starts at the aligned offset) to `out`.
nlmsghdr* Append(std::vector<char>* out, uint16_t type, size_t payload, uint32_t seq = 0, uint32_t pid = 0,
                 uint16_t flags = 0) {
  const size_t at = out->size();
  out->resize(at + MNL_ALIGN(MNL_NLMSG_HDRLEN + payload), 0);
  auto* nlh = mnl_nlmsg_put_header(out->data() + at);
  nlh->nlmsg_type = type;
  nlh->nlmsg_len = static_cast<uint32_t>(MNL_NLMSG_HDRLEN + payload);
  nlh->nlmsg_seq = seq;
  nlh->nlmsg_pid = pid;
  nlh->nlmsg_flags = flags;
  return nlh;
}

void AppendError(std::vector<char>* out, int error, uint32_t seq = 0, uint32_t pid = 0) {
  nlmsghdr* nlh = Append(out, NLMSG_ERROR, sizeof(nlmsgerr), seq, pid);
  static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error = error;
}

TEST(MnlNlmsg, OkAndNextWalkAlignedMessages) {
  std::vector<char> buf;
  buf.reserve(4096);
  Append(&buf, 100, 5);
  Append(&buf, 101, 0);
  Append(&buf, 102, 13);
  int left = static_cast<int>(buf.size());
  std::vector<uint16_t> types;
  auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data());
  for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) types.push_back(nlh->nlmsg_type);
  EXPECT_EQ(types, (std::vector<uint16_t>{100, 101, 102}));
  EXPECT_EQ(left, 0);

  auto* first = reinterpret_cast<nlmsghdr*>(buf.data());
  EXPECT_FALSE(mnl_nlmsg_ok(first, 15));                          // not a whole header
  EXPECT_FALSE(mnl_nlmsg_ok(first, static_cast<int>(first->nlmsg_len) - 1));  // cut short
  EXPECT_TRUE(mnl_nlmsg_ok(first, static_cast<int>(first->nlmsg_len)));
  first->nlmsg_len = 15;  // shorter than its header
  EXPECT_FALSE(mnl_nlmsg_ok(first, 64));
}

TEST(MnlNlmsg, SeqAndPortidZeroMatchesAnything) {
  std::vector<char> buf;
  nlmsghdr* nlh = Append(&buf, 100, 0, 7, 42);
  EXPECT_TRUE(mnl_nlmsg_seq_ok(nlh, 7));
  EXPECT_TRUE(mnl_nlmsg_seq_ok(nlh, 0));
  EXPECT_FALSE(mnl_nlmsg_seq_ok(nlh, 8));
  EXPECT_TRUE(mnl_nlmsg_portid_ok(nlh, 42));
  EXPECT_TRUE(mnl_nlmsg_portid_ok(nlh, 0));
  EXPECT_FALSE(mnl_nlmsg_portid_ok(nlh, 43));
  nlh->nlmsg_seq = 0;
  nlh->nlmsg_pid = 0;  // a notification from the kernel
  EXPECT_TRUE(mnl_nlmsg_seq_ok(nlh, 8));
  EXPECT_TRUE(mnl_nlmsg_portid_ok(nlh, 43));
}

TEST(MnlBatch, FillsUpToTheLimitAndCarriesTheOverflow) {
  alignas(4) char buf[256];
  mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf, 100);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(mnl_nlmsg_batch_is_empty(b));
  EXPECT_EQ(mnl_nlmsg_batch_head(b), static_cast<void*>(buf));
  EXPECT_EQ(mnl_nlmsg_batch_current(b), static_cast<void*>(buf));
  auto put = [&](uint16_t type) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
    nlh->nlmsg_type = type;
    mnl_attr_put(nlh, 1, 20, std::string(20, 'x').data());  // 16 + 24 = 40 bytes
    return mnl_nlmsg_batch_next(b);
  };
  EXPECT_TRUE(put(100));
  EXPECT_FALSE(mnl_nlmsg_batch_is_empty(b));
  EXPECT_EQ(mnl_nlmsg_batch_size(b), 40u);
  EXPECT_TRUE(put(101));
  EXPECT_EQ(mnl_nlmsg_batch_size(b), 80u);
  EXPECT_EQ(mnl_nlmsg_batch_current(b), static_cast<void*>(buf + 80));
  EXPECT_FALSE(put(102));  // 120 > 100: full, the message stays outside
  EXPECT_EQ(mnl_nlmsg_batch_size(b), 80u);
  // The batch to send is [head, head + size); then reset starts the next
  // batch with the message that did not fit.
  mnl_nlmsg_batch_reset(b);
  EXPECT_EQ(mnl_nlmsg_batch_size(b), 40u);
  EXPECT_EQ(reinterpret_cast<nlmsghdr*>(buf)->nlmsg_type, 102);
  EXPECT_EQ(mnl_nlmsg_batch_current(b), static_cast<void*>(buf + 40));
  // A reset without overflow empties it.
  mnl_nlmsg_batch_reset(b);
  EXPECT_TRUE(mnl_nlmsg_batch_is_empty(b));
  EXPECT_EQ(mnl_nlmsg_batch_current(b), static_cast<void*>(buf));
  mnl_nlmsg_batch_stop(b);
}

struct Calls {
  std::vector<uint16_t> types;
  int verdict = MNL_CB_OK;
};

int OnData(const nlmsghdr* nlh, void* data) {
  auto* c = static_cast<Calls*>(data);
  c->types.push_back(nlh->nlmsg_type);
  return c->verdict;
}

int RunErrno(const std::vector<char>& buf, unsigned seq, unsigned portid, Calls* calls, int* err) {
  errno = 0;
  const int r = mnl_cb_run(buf.data(), buf.size(), seq, portid, OnData, calls);
  *err = errno;
  return r;
}

TEST(MnlCbRun, DataMessagesGoToTheCallback) {
  std::vector<char> buf;
  Append(&buf, 100, 4, 5, 9);
  Append(&buf, NLMSG_NOOP, 0, 5, 9);  // ignored
  Append(&buf, 101, 3, 5, 9);
  Calls c;
  int err = 0;
  EXPECT_EQ(RunErrno(buf, 5, 9, &c, &err), MNL_CB_OK);
  EXPECT_EQ(c.types, (std::vector<uint16_t>{100, 101}));
}

TEST(MnlCbRun, AckStopsAndErrorSetsErrno) {
  std::vector<char> ack;
  AppendError(&ack, 0, 5);
  Calls c;
  int err = 0;
  EXPECT_EQ(RunErrno(ack, 5, 0, &c, &err), MNL_CB_STOP);

  std::vector<char> nack;
  Append(&nack, 100, 0, 5);
  AppendError(&nack, -ENOENT, 5);
  Append(&nack, 101, 0, 5);  // after the error: not visited
  Calls c2;
  EXPECT_EQ(RunErrno(nack, 5, 0, &c2, &err), MNL_CB_ERROR);
  EXPECT_EQ(err, ENOENT);
  EXPECT_EQ(c2.types, (std::vector<uint16_t>{100}));

  // An error message too short to hold its nlmsgerr.
  std::vector<char> cut;
  Append(&cut, NLMSG_ERROR, 2, 5);
  EXPECT_EQ(RunErrno(cut, 5, 0, &c, &err), MNL_CB_ERROR);
  EXPECT_EQ(err, EBADMSG);
}

TEST(MnlCbRun, MultipartDumpEndsAtDone) {
  // A dump comes in several reads; each but the last is OK, the last stops.
  std::vector<char> part1, part2;
  Append(&part1, 100, 8, 3, 9, NLM_F_MULTI);
  Append(&part1, 100, 8, 3, 9, NLM_F_MULTI);
  Append(&part2, 100, 8, 3, 9, NLM_F_MULTI);
  Append(&part2, NLMSG_DONE, 4, 3, 9, NLM_F_MULTI);
  Append(&part2, 100, 8, 3, 9);  // after DONE: not visited
  Calls c;
  int err = 0;
  EXPECT_EQ(RunErrno(part1, 3, 9, &c, &err), MNL_CB_OK);
  EXPECT_EQ(RunErrno(part2, 3, 9, &c, &err), MNL_CB_STOP);
  EXPECT_EQ(c.types.size(), 3u);
}

TEST(MnlCbRun, RefusesForeignSeqAndPortid) {
  std::vector<char> buf;
  Append(&buf, 100, 0, 4, 9);
  Calls c;
  int err = 0;
  EXPECT_EQ(RunErrno(buf, 5, 9, &c, &err), -1);
  EXPECT_EQ(err, EPROTO);
  EXPECT_EQ(RunErrno(buf, 4, 8, &c, &err), -1);
  EXPECT_EQ(err, ESRCH);
  EXPECT_TRUE(c.types.empty());
  EXPECT_EQ(RunErrno(buf, 0, 0, &c, &err), MNL_CB_OK);  // 0: not checked
  EXPECT_EQ(c.types.size(), 1u);
}

TEST(MnlCbRun, InterruptedDumpAndCallbackVerdicts) {
  std::vector<char> intr;
  Append(&intr, 100, 0, 1, 0, NLM_F_MULTI | NLM_F_DUMP_INTR);
  Calls c;
  int err = 0;
  EXPECT_EQ(RunErrno(intr, 1, 0, &c, &err), -1);
  EXPECT_EQ(err, EINTR);

  std::vector<char> two;
  Append(&two, 100, 0);
  Append(&two, 101, 0);
  Calls stop;
  stop.verdict = MNL_CB_STOP;
  EXPECT_EQ(RunErrno(two, 0, 0, &stop, &err), MNL_CB_STOP);
  EXPECT_EQ(stop.types.size(), 1u);
  Calls fail;
  fail.verdict = MNL_CB_ERROR;
  EXPECT_EQ(RunErrno(two, 0, 0, &fail, &err), MNL_CB_ERROR);
  EXPECT_EQ(fail.types.size(), 1u);
}

int OnDoneCustom(const nlmsghdr*, void* data) {
  ++*static_cast<int*>(data);
  return MNL_CB_OK;
}

TEST(MnlCbRun, ControlHandlersOverrideTheDefaults) {
  std::vector<char> buf;
  Append(&buf, NLMSG_DONE, 4);
  Append(&buf, NLMSG_DONE, 4);
  mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
  ctl[NLMSG_DONE] = OnDoneCustom;
  int n = 0;
  EXPECT_EQ(mnl_cb_run2(buf.data(), buf.size(), 0, 0, nullptr, &n, ctl, NLMSG_MIN_TYPE), MNL_CB_OK);
  EXPECT_EQ(n, 2);
}

// ---- a real socket (NETLINK_ROUTE needs no privilege) -----------------------

struct Links {
  bool saw_lo = false;
  int messages = 0;
};

int OnLink(const nlmsghdr* nlh, void* data) {
  auto* l = static_cast<Links*>(data);
  ++l->messages;
  return mnl_attr_parse(
      nlh, sizeof(ifinfomsg),
      [](const nlattr* a, void* data) {
        if (mnl_attr_get_type(a) == IFLA_IFNAME && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0 &&
            strcmp(mnl_attr_get_str(a), "lo") == 0) {
          static_cast<Links*>(data)->saw_lo = true;
        }
        return MNL_CB_OK;
      },
      l);
}

TEST(MnlSocket, DumpsLinksOverRtnetlink) {
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  ASSERT_NE(nl, nullptr) << strerror(errno);
  ASSERT_EQ(mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID), 0) << strerror(errno);
  const unsigned portid = mnl_socket_get_portid(nl);
  EXPECT_NE(portid, 0u);
  EXPECT_GE(mnl_socket_get_fd(nl), 0);

  Buf req;
  nlmsghdr* nlh = req.Msg();
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = 1234;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ASSERT_EQ(mnl_socket_sendto(nl, nlh, nlh->nlmsg_len), static_cast<ssize_t>(nlh->nlmsg_len));

  std::vector<char> buf(32768);
  Links links;
  int r = MNL_CB_OK;
  while (r > MNL_CB_STOP) {
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    ASSERT_GT(n, 0) << strerror(errno);
    r = mnl_cb_run(buf.data(), static_cast<size_t>(n), 1234, portid, OnLink, &links);
  }
  EXPECT_EQ(r, MNL_CB_STOP);
  EXPECT_TRUE(links.saw_lo);
  EXPECT_GE(links.messages, 1);

  // A reply larger than the buffer is an error (ENOSPC), not half a message.
  nlh->nlmsg_seq = 1235;
  ASSERT_GT(mnl_socket_sendto(nl, nlh, nlh->nlmsg_len), 0);
  char tiny[16];
  errno = 0;
  EXPECT_EQ(mnl_socket_recvfrom(nl, tiny, sizeof(tiny)), -1);
  EXPECT_EQ(errno, ENOSPC);

  // Socket options go to SOL_NETLINK.
  int one = 1;
  EXPECT_EQ(mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one)), 0);
  int got = 0;
  socklen_t len = sizeof(got);
  EXPECT_EQ(mnl_socket_getsockopt(nl, NETLINK_EXT_ACK, &got, &len), 0);
  EXPECT_EQ(got, 1);
  EXPECT_EQ(mnl_socket_close(nl), 0);
}

TEST(MnlSocket, ErrorsFromTheKernel) {
  // An unknown bus fails to open; an unknown request type is refused by
  // the kernel with an NLMSG_ERROR that mnl_cb_run turns into errno.
  errno = 0;
  EXPECT_EQ(mnl_socket_open(4242), nullptr);
  EXPECT_NE(errno, 0);
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  ASSERT_NE(nl, nullptr);
  ASSERT_EQ(mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID), 0);
  Buf req;
  nlmsghdr* nlh = req.Msg();
  nlh->nlmsg_type = RTM_MAX + 1;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = 77;
  mnl_nlmsg_put_extra_header(nlh, sizeof(rtgenmsg));
  ASSERT_GT(mnl_socket_sendto(nl, nlh, nlh->nlmsg_len), 0);
  std::vector<char> buf(8192);
  const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
  ASSERT_GT(n, 0);
  errno = 0;
  EXPECT_EQ(mnl_cb_run(buf.data(), static_cast<size_t>(n), 77, mnl_socket_get_portid(nl), nullptr, nullptr),
            MNL_CB_ERROR);
  EXPECT_EQ(errno, EOPNOTSUPP);
  mnl_socket_close(nl);
}

}  // namespace
