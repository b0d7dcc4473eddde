// nftproxy's own implementation of the libmnl API (<libmnl/libmnl.h>), for
// the static build only: Debian ships no libmnl.a, and libnftnl.a calls
// about forty mnl_* functions. Written from the API's documented contract;
// the dynamic build keeps Debian's libmnl.so. The header is Debian's
// (libmnl-dev), so the compiler checks every signature against it.
//
// Netlink in brief: a message is an nlmsghdr followed by its payload, both
// padded to 4 bytes; attributes are (len, type) headers followed by their
// payload, each padded to 4 bytes; nla_len counts the header and the
// unpadded payload, nlmsg_len the header and everything after it.
#include <errno.h>
#include <libmnl/libmnl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

char* Bytes(void* p) { return static_cast<char*>(p); }
const char* Bytes(const void* p) { return static_cast<const char*>(p); }

// The attribute that would be appended to `nlh` next.
nlattr* Tail(nlmsghdr* nlh) { return static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(nlh)); }

// Payload sizes of the fixed-size attribute types (0: any size).
size_t FixedSize(mnl_attr_data_type t) {
  switch (t) {
    case MNL_TYPE_U8: return sizeof(uint8_t);
    case MNL_TYPE_U16: return sizeof(uint16_t);
    case MNL_TYPE_U32: return sizeof(uint32_t);
    case MNL_TYPE_U64: return sizeof(uint64_t);
    case MNL_TYPE_MSECS: return sizeof(uint64_t);
    default: return 0;
  }
}

int Fail(int err) {
  errno = err;
  return -1;
}

// Walks the attributes in [begin, begin + size), calling cb on each until it
// returns MNL_CB_STOP or MNL_CB_ERROR.
int ParseRange(const void* begin, size_t size, mnl_attr_cb_t cb, void* data) {
  const char* p = Bytes(begin);
  const char* end = p + size;
  for (auto* a = reinterpret_cast<const nlattr*>(p); mnl_attr_ok(a, static_cast<int>(end - Bytes(a)));
       a = mnl_attr_next(a)) {
    const int r = cb(a, data);
    if (r <= MNL_CB_STOP) return r;
  }
  return MNL_CB_OK;
}

// What a control message (type below NLMSG_MIN_TYPE) means when the caller
// gave no handler of its own.
int DefaultControl(const nlmsghdr* nlh) {
  switch (nlh->nlmsg_type) {
    case NLMSG_ERROR: {
      if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) return Fail(EBADMSG);
      const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      // error 0 is an acknowledgement: the request is done.
      if (e->error == 0) return MNL_CB_STOP;
      errno = e->error < 0 ? -e->error : e->error;
      return MNL_CB_ERROR;
    }
    case NLMSG_DONE:
      return MNL_CB_STOP;
    default:  // NLMSG_NOOP, NLMSG_OVERRUN, anything else: keep going
      return MNL_CB_OK;
  }
}

}  // namespace

struct mnl_socket {
  int fd;
  sockaddr_nl local;  // after bind: our port id and groups
};

struct mnl_nlmsg_batch {
  char* head;     // the caller's buffer
  size_t limit;   // bytes the batch may hold
  size_t used;    // bytes of complete messages
  bool overflow;  // the message at `head + used` did not fit
};

extern "C" {

// ---- sockets ----------------------------------------------------------------

mnl_socket* mnl_socket_open2(int bus, int flags) {
  const int fd = socket(AF_NETLINK, SOCK_RAW | flags, bus);
  if (fd < 0) return nullptr;
  mnl_socket* nl = mnl_socket_fdopen(fd);
  if (nl == nullptr) close(fd);
  return nl;
}

mnl_socket* mnl_socket_open(int bus) { return mnl_socket_open2(bus, 0); }

mnl_socket* mnl_socket_fdopen(int fd) {
  auto* nl = static_cast<mnl_socket*>(calloc(1, sizeof(mnl_socket)));
  if (nl == nullptr) return nullptr;
  nl->fd = fd;
  // An fd that is already bound knows its address; an unbound one reads 0s.
  socklen_t len = sizeof(nl->local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&nl->local), &len) < 0) {
    const int err = errno;
    free(nl);
    errno = err;
    return nullptr;
  }
  return nl;
}

int mnl_socket_bind(mnl_socket* nl, unsigned int groups, pid_t pid) {
  sockaddr_nl want{};
  want.nl_family = AF_NETLINK;
  want.nl_groups = groups;
  want.nl_pid = static_cast<uint32_t>(pid);
  if (bind(nl->fd, reinterpret_cast<sockaddr*>(&want), sizeof(want)) < 0) return -1;
  sockaddr_nl got{};
  socklen_t len = sizeof(got);
  if (getsockname(nl->fd, reinterpret_cast<sockaddr*>(&got), &len) < 0) return -1;
  if (len != sizeof(got) || got.nl_family != AF_NETLINK) return Fail(EINVAL);
  nl->local = got;
  return 0;
}

int mnl_socket_close(mnl_socket* nl) {
  const int r = close(nl->fd);
  free(nl);
  return r;
}

int mnl_socket_get_fd(const mnl_socket* nl) { return nl->fd; }

unsigned int mnl_socket_get_portid(const mnl_socket* nl) { return nl->local.nl_pid; }

ssize_t mnl_socket_sendto(const mnl_socket* nl, const void* req, size_t siz) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  return sendto(nl->fd, req, siz, 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof(kernel));
}

ssize_t mnl_socket_recvfrom(const mnl_socket* nl, void* buf, size_t siz) {
  sockaddr_nl from{};
  iovec iov{buf, siz};
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof(from);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const ssize_t n = recvmsg(nl->fd, &msg, 0);
  if (n < 0) return n;
  // A datagram larger than the buffer lost its end: say so rather than
  // hand back half a message.
  if (msg.msg_flags & MSG_TRUNC) return Fail(ENOSPC);
  if (msg.msg_namelen != sizeof(from)) return Fail(EINVAL);
  return n;
}

int mnl_socket_setsockopt(const mnl_socket* nl, int type, void* buf, socklen_t len) {
  return setsockopt(nl->fd, SOL_NETLINK, type, buf, len);
}

int mnl_socket_getsockopt(const mnl_socket* nl, int type, void* buf, socklen_t* len) {
  return getsockopt(nl->fd, SOL_NETLINK, type, buf, len);
}

// ---- messages ---------------------------------------------------------------

size_t mnl_nlmsg_size(size_t len) { return len + MNL_NLMSG_HDRLEN; }

size_t mnl_nlmsg_get_payload_len(const nlmsghdr* nlh) { return nlh->nlmsg_len - MNL_NLMSG_HDRLEN; }

nlmsghdr* mnl_nlmsg_put_header(void* buf) {
  memset(buf, 0, MNL_NLMSG_HDRLEN);
  auto* nlh = static_cast<nlmsghdr*>(buf);
  nlh->nlmsg_len = MNL_NLMSG_HDRLEN;
  return nlh;
}

void* mnl_nlmsg_put_extra_header(nlmsghdr* nlh, size_t size) {
  char* at = Bytes(nlh) + nlh->nlmsg_len;
  const size_t padded = MNL_ALIGN(size);
  memset(at, 0, padded);
  nlh->nlmsg_len += padded;
  return at;
}

void* mnl_nlmsg_get_payload(const nlmsghdr* nlh) {
  return const_cast<char*>(Bytes(nlh)) + MNL_NLMSG_HDRLEN;
}

void* mnl_nlmsg_get_payload_offset(const nlmsghdr* nlh, size_t offset) {
  return const_cast<char*>(Bytes(nlh)) + MNL_NLMSG_HDRLEN + MNL_ALIGN(offset);
}

void* mnl_nlmsg_get_payload_tail(const nlmsghdr* nlh) {
  return const_cast<char*>(Bytes(nlh)) + MNL_ALIGN(nlh->nlmsg_len);
}

bool mnl_nlmsg_ok(const nlmsghdr* nlh, int len) {
  // Room for a header, a header that claims at least itself, and a length
  // that fits in what is left.
  return len >= static_cast<int>(sizeof(nlmsghdr)) && nlh->nlmsg_len >= sizeof(nlmsghdr) &&
         nlh->nlmsg_len <= static_cast<unsigned>(len);
}

nlmsghdr* mnl_nlmsg_next(const nlmsghdr* nlh, int* len) {
  const size_t step = MNL_ALIGN(nlh->nlmsg_len);
  *len -= static_cast<int>(step);
  return reinterpret_cast<nlmsghdr*>(const_cast<char*>(Bytes(nlh)) + step);
}

bool mnl_nlmsg_seq_ok(const nlmsghdr* nlh, unsigned int seq) {
  // 0 on either side means "not tracked" (notifications carry seq 0).
  return nlh->nlmsg_seq == 0 || seq == 0 || nlh->nlmsg_seq == seq;
}

bool mnl_nlmsg_portid_ok(const nlmsghdr* nlh, unsigned int portid) {
  return nlh->nlmsg_pid == 0 || portid == 0 || nlh->nlmsg_pid == portid;
}

// ---- batches ----------------------------------------------------------------

mnl_nlmsg_batch* mnl_nlmsg_batch_start(void* buf, size_t bufsiz) {
  auto* b = static_cast<mnl_nlmsg_batch*>(malloc(sizeof(mnl_nlmsg_batch)));
  if (b == nullptr) return nullptr;
  b->head = Bytes(buf);
  b->limit = bufsiz;
  b->used = 0;
  b->overflow = false;
  return b;
}

bool mnl_nlmsg_batch_next(mnl_nlmsg_batch* b) {
  const auto* cur = reinterpret_cast<const nlmsghdr*>(b->head + b->used);
  if (b->used + cur->nlmsg_len > b->limit) {
    // The caller's buffer is larger than the limit, so the message is
    // intact; mnl_nlmsg_batch_reset carries it into the next batch.
    b->overflow = true;
    return false;
  }
  b->used += cur->nlmsg_len;
  return true;
}

void mnl_nlmsg_batch_stop(mnl_nlmsg_batch* b) { free(b); }

size_t mnl_nlmsg_batch_size(mnl_nlmsg_batch* b) { return b->used; }

void mnl_nlmsg_batch_reset(mnl_nlmsg_batch* b) {
  if (!b->overflow) {
    b->used = 0;
    return;
  }
  // The message that did not fit becomes the first of the new batch.
  const auto* cur = reinterpret_cast<const nlmsghdr*>(b->head + b->used);
  const size_t len = cur->nlmsg_len;
  memmove(b->head, cur, len);
  b->used = len;
  b->overflow = false;
}

void* mnl_nlmsg_batch_head(mnl_nlmsg_batch* b) { return b->head; }

void* mnl_nlmsg_batch_current(mnl_nlmsg_batch* b) { return b->head + b->used; }

bool mnl_nlmsg_batch_is_empty(mnl_nlmsg_batch* b) { return b->used == 0; }

// ---- attributes -------------------------------------------------------------

uint16_t mnl_attr_get_type(const nlattr* attr) { return attr->nla_type & NLA_TYPE_MASK; }

uint16_t mnl_attr_get_len(const nlattr* attr) { return attr->nla_len; }

uint16_t mnl_attr_get_payload_len(const nlattr* attr) {
  return static_cast<uint16_t>(attr->nla_len - MNL_ATTR_HDRLEN);
}

void* mnl_attr_get_payload(const nlattr* attr) { return const_cast<char*>(Bytes(attr)) + MNL_ATTR_HDRLEN; }

uint8_t mnl_attr_get_u8(const nlattr* attr) { return *static_cast<const uint8_t*>(mnl_attr_get_payload(attr)); }

uint16_t mnl_attr_get_u16(const nlattr* attr) {
  uint16_t v;
  memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
  return v;
}

uint32_t mnl_attr_get_u32(const nlattr* attr) {
  uint32_t v;
  memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
  return v;
}

uint64_t mnl_attr_get_u64(const nlattr* attr) {
  // Only 4-byte aligned in a message: copy, do not dereference.
  uint64_t v;
  memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
  return v;
}

const char* mnl_attr_get_str(const nlattr* attr) { return static_cast<const char*>(mnl_attr_get_payload(attr)); }

bool mnl_attr_ok(const nlattr* attr, int len) {
  return len >= static_cast<int>(sizeof(nlattr)) && attr->nla_len >= sizeof(nlattr) &&
         attr->nla_len <= static_cast<unsigned>(len);
}

nlattr* mnl_attr_next(const nlattr* attr) {
  return reinterpret_cast<nlattr*>(const_cast<char*>(Bytes(attr)) + MNL_ALIGN(attr->nla_len));
}

void mnl_attr_put(nlmsghdr* nlh, uint16_t type, size_t len, const void* data) {
  nlattr* a = Tail(nlh);
  a->nla_type = type;
  a->nla_len = static_cast<uint16_t>(MNL_ATTR_HDRLEN + len);
  char* payload = Bytes(a) + MNL_ATTR_HDRLEN;
  if (len > 0) memcpy(payload, data, len);
  memset(payload + len, 0, MNL_ALIGN(len) - len);  // no stale bytes in the padding
  nlh->nlmsg_len += MNL_ALIGN(MNL_ATTR_HDRLEN + len);
}

void mnl_attr_put_u8(nlmsghdr* nlh, uint16_t type, uint8_t data) { mnl_attr_put(nlh, type, sizeof(data), &data); }
void mnl_attr_put_u16(nlmsghdr* nlh, uint16_t type, uint16_t data) { mnl_attr_put(nlh, type, sizeof(data), &data); }
void mnl_attr_put_u32(nlmsghdr* nlh, uint16_t type, uint32_t data) { mnl_attr_put(nlh, type, sizeof(data), &data); }
void mnl_attr_put_u64(nlmsghdr* nlh, uint16_t type, uint64_t data) { mnl_attr_put(nlh, type, sizeof(data), &data); }
void mnl_attr_put_str(nlmsghdr* nlh, uint16_t type, const char* data) { mnl_attr_put(nlh, type, strlen(data), data); }
void mnl_attr_put_strz(nlmsghdr* nlh, uint16_t type, const char* data) {
  mnl_attr_put(nlh, type, strlen(data) + 1, data);
}

bool mnl_attr_put_check(nlmsghdr* nlh, size_t buflen, uint16_t type, size_t len, const void* data) {
  if (MNL_ALIGN(nlh->nlmsg_len) + MNL_ATTR_HDRLEN + MNL_ALIGN(len) > buflen) return false;
  mnl_attr_put(nlh, type, len, data);
  return true;
}
bool mnl_attr_put_u8_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint8_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}
bool mnl_attr_put_u16_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint16_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}
bool mnl_attr_put_u32_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint32_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}
bool mnl_attr_put_u64_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint64_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}
bool mnl_attr_put_str_check(nlmsghdr* nlh, size_t buflen, uint16_t type, const char* data) {
  return mnl_attr_put_check(nlh, buflen, type, strlen(data), data);
}
bool mnl_attr_put_strz_check(nlmsghdr* nlh, size_t buflen, uint16_t type, const char* data) {
  return mnl_attr_put_check(nlh, buflen, type, strlen(data) + 1, data);
}

nlattr* mnl_attr_nest_start(nlmsghdr* nlh, uint16_t type) {
  nlattr* start = Tail(nlh);
  start->nla_type = static_cast<uint16_t>(NLA_F_NESTED | type);
  start->nla_len = MNL_ATTR_HDRLEN;  // fixed by mnl_attr_nest_end
  nlh->nlmsg_len += MNL_ATTR_HDRLEN;
  return start;
}

nlattr* mnl_attr_nest_start_check(nlmsghdr* nlh, size_t buflen, uint16_t type) {
  if (MNL_ALIGN(nlh->nlmsg_len) + MNL_ATTR_HDRLEN > buflen) return nullptr;
  return mnl_attr_nest_start(nlh, type);
}

void mnl_attr_nest_end(nlmsghdr* nlh, nlattr* start) {
  start->nla_len = static_cast<uint16_t>(Bytes(Tail(nlh)) - Bytes(start));
}

void mnl_attr_nest_cancel(nlmsghdr* nlh, nlattr* start) {
  nlh->nlmsg_len -= static_cast<uint32_t>(Bytes(Tail(nlh)) - Bytes(start));
}

int mnl_attr_type_valid(const nlattr* attr, uint16_t maxtype) {
  if (mnl_attr_get_type(attr) > maxtype) return Fail(EOPNOTSUPP);
  return 1;
}

int mnl_attr_validate2(const nlattr* attr, mnl_attr_data_type type, size_t exp_len) {
  if (type >= MNL_TYPE_MAX) return Fail(EINVAL);
  if (attr->nla_len < MNL_ATTR_HDRLEN) return Fail(ERANGE);
  const size_t have = mnl_attr_get_payload_len(attr);
  if (have < exp_len) return Fail(ERANGE);
  const char* p = static_cast<const char*>(mnl_attr_get_payload(attr));
  switch (type) {
    case MNL_TYPE_FLAG:
      if (have > 0) return Fail(ERANGE);
      break;
    case MNL_TYPE_STRING:
      if (have == 0) return Fail(ERANGE);
      break;
    case MNL_TYPE_NUL_STRING:
      if (have == 0) return Fail(ERANGE);
      if (p[have - 1] != '\0') return Fail(EINVAL);
      break;
    case MNL_TYPE_NESTED:
      // Empty is fine; otherwise it must hold at least one attribute header.
      if (have > 0 && have < MNL_ATTR_HDRLEN) return Fail(ERANGE);
      break;
    default:
      break;
  }
  if (exp_len != 0 && have > exp_len) return Fail(ERANGE);
  return 0;
}

int mnl_attr_validate(const nlattr* attr, mnl_attr_data_type type) {
  if (type >= MNL_TYPE_MAX) return Fail(EINVAL);
  return mnl_attr_validate2(attr, type, FixedSize(type));
}

int mnl_attr_parse(const nlmsghdr* nlh, unsigned int offset, mnl_attr_cb_t cb, void* data) {
  const char* begin = static_cast<const char*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const char* end = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  if (end <= begin) return MNL_CB_OK;
  return ParseRange(begin, static_cast<size_t>(end - begin), cb, data);
}

int mnl_attr_parse_nested(const nlattr* nested, mnl_attr_cb_t cb, void* data) {
  return ParseRange(mnl_attr_get_payload(nested), mnl_attr_get_payload_len(nested), cb, data);
}

int mnl_attr_parse_payload(const void* payload, size_t payload_len, mnl_attr_cb_t cb, void* data) {
  return ParseRange(payload, payload_len, cb, data);
}

// ---- callbacks --------------------------------------------------------------

int mnl_cb_run2(const void* buf, size_t numbytes, unsigned int seq, unsigned int portid, mnl_cb_t cb_data, void* data,
                mnl_cb_t* cb_ctl_array, unsigned int cb_ctl_array_len) {
  int r = MNL_CB_OK;
  int left = static_cast<int>(numbytes);
  for (auto* nlh = static_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
    if (!mnl_nlmsg_portid_ok(nlh, portid)) return Fail(ESRCH);
    if (!mnl_nlmsg_seq_ok(nlh, seq)) return Fail(EPROTO);
    // The dump changed while the kernel was producing it: start over.
    if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) return Fail(EINTR);
    if (nlh->nlmsg_type >= NLMSG_MIN_TYPE) {
      if (cb_data != nullptr) r = cb_data(nlh, data);
    } else if (cb_ctl_array != nullptr && nlh->nlmsg_type < cb_ctl_array_len &&
               cb_ctl_array[nlh->nlmsg_type] != nullptr) {
      r = cb_ctl_array[nlh->nlmsg_type](nlh, data);
    } else {
      r = DefaultControl(nlh);
    }
    if (r <= MNL_CB_STOP) return r;
  }
  return r;
}

int mnl_cb_run(const void* buf, size_t numbytes, unsigned int seq, unsigned int portid, mnl_cb_t cb_data,
               void* data) {
  return mnl_cb_run2(buf, numbytes, seq, portid, cb_data, data, nullptr, 0);
}

}  // extern "C"
