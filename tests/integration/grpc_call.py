#!/usr/bin/env python3
"""One gRPC call with grpcio, as a client that is not the CLI (grpcurl's
place, which Debian does not ship), run inside a test's network namespace:

  grpc_call.py TARGET METHOD HEX_REQUEST [--ca F] [--cert F --key F] [--stream]

Prints "OK <hex of each reply>" or "ERR <StatusCode name> <details>"."""
import argparse
import sys

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("method")
    p.add_argument("request")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--stream", action="store_true")
    a = p.parse_args()
    read = lambda path: open(path, "rb").read() if path else None
    if a.ca or a.cert:
        creds = grpc.ssl_channel_credentials(read(a.ca), read(a.key), read(a.cert))
        channel = grpc.secure_channel(a.target, creds)
    else:
        channel = grpc.insecure_channel(a.target)
    ident = lambda b: b
    try:
        if a.stream:
            call = channel.unary_stream(a.method, request_serializer=ident, response_deserializer=ident)
            replies = []
            for r in call(bytes.fromhex(a.request), timeout=10):
                replies.append(r)
                break  # the first message is enough (Watch does not end)
        else:
            call = channel.unary_unary(a.method, request_serializer=ident, response_deserializer=ident)
            replies = [call(bytes.fromhex(a.request), timeout=10)]
        print("OK", " ".join(r.hex() for r in replies))
    except grpc.RpcError as e:
        print("ERR", e.code().name, e.details())
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
