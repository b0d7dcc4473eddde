#!/usr/bin/env python3
"""Writes a large manifest for the manifest-parsing benchmark (issue 12).

  gen_manifest.py [--services N] [--endpoints E] [--format FORMAT] OUT

FORMAT (default: yaml):
  yaml   nftproxy's schema, one document per resource, as `nftproxy get -o yaml`
  json   nftproxy's schema, one {"kind": "List", "items": [...]} as `-o json`
  k8s    Kubernetes v1 Services and discovery.k8s.io/v1 EndpointSlices in one
         `kind: List` document, as `kubectl get svc,endpointslices -o yaml`
With the defaults (100,000 services, 2 endpoints each) yaml is about 50 MB.
"""
import argparse
import json
import sys


def ip(prefix, i):
    return "%s.%d.%d" % (prefix, (i >> 8) & 255, i & 255)


def own(i, endpoints):
    ns = "ns-%d" % (i % 100)
    name = "svc-%d" % i
    svc = {
        "kind": "Service", "apiVersion": "nftproxy.io/v1",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": name}},
        "spec": {
            "type": "CLUSTER_IP",
            "clusterIps": [ip("10.%d" % (96 + (i >> 16)), i)],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        },
    }
    slice_ = {
        "kind": "EndpointSlice", "apiVersion": "nftproxy.io/v1",
        "metadata": {"namespace": ns, "name": name + "-abcde"},
        "serviceName": name,
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": [{"addresses": [ip("10.%d" % (128 + ((i * endpoints + e) >> 16)), i * endpoints + e)],
                       "nodeName": "node-%d" % ((i + e) % 500)}
                      for e in range(endpoints)],
    }
    return svc, slice_


def k8s(i, endpoints):
    svc, slice_ = own(i, endpoints)
    meta = svc["metadata"]
    k8s_svc = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"],
                     "resourceVersion": '"%d"' % (1000 + i), "uid": "9b7d6c1e-2f0a-4c3b-8f5e-%012x" % i},
        "spec": {"clusterIP": svc["spec"]["clusterIps"][0], "clusterIPs": svc["spec"]["clusterIps"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                 "type": "ClusterIP"},
        "status": {"loadBalancer": {}},
    }
    smeta = slice_["metadata"]
    k8s_slice = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": smeta["name"], "namespace": smeta["namespace"],
                     "labels": {"kubernetes.io/service-name": meta["name"]}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": e["addresses"], "conditions": {"ready": True}, "nodeName": e["nodeName"]}
                      for e in slice_["endpoints"]],
    }
    return k8s_svc, k8s_slice


def scalar(v):
    if v is True:
        return "true"
    if isinstance(v, int):
        return str(v)
    return v


def yaml_lines(v, indent, out):
    """Block-style YAML as yaml-cpp's emitter (and kubectl) print it."""
    pad = " " * indent
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out.append("%s%s:" % (pad, k))
                yaml_lines(x, indent + 2, out)
            elif isinstance(x, dict):
                out.append("%s%s: {}" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, scalar(x)))
    else:
        for x in v:
            if isinstance(x, dict):
                sub = []
                yaml_lines(x, indent + 2, sub)
                sub[0] = pad + "- " + sub[0][indent + 2:]
                out.extend(sub)
            else:
                out.append("%s- %s" % (pad, scalar(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=100000)
    ap.add_argument("--endpoints", type=int, default=2)
    ap.add_argument("--format", choices=["yaml", "json", "k8s"], default="yaml")
    ap.add_argument("out")
    a = ap.parse_args()
    with open(a.out, "w") as f:
        if a.format == "json":
            f.write('{\n "kind": "List",\n "items": [\n')
        elif a.format == "k8s":
            f.write("apiVersion: v1\nitems:\n")
        for i in range(a.services):
            if a.format == "json":
                svc, slice_ = own(i, a.endpoints)
                sep = ",\n" if i + 1 < a.services else "\n"
                f.write("  " + json.dumps(svc) + ",\n  " + json.dumps(slice_) + sep)
                continue
            docs = k8s(i, a.endpoints) if a.format == "k8s" else own(i, a.endpoints)
            for d in docs:
                out = []
                if a.format == "k8s":
                    yaml_lines([d], 0, out)
                else:
                    out.append("---")
                    yaml_lines(d, 0, out)
                f.write("\n".join(out) + "\n")
        if a.format == "json":
            f.write(" ]\n}\n")
        elif a.format == "k8s":
            f.write("kind: List\nmetadata:\n  resourceVersion: \"\"\n")


if __name__ == "__main__":
    sys.exit(main())
