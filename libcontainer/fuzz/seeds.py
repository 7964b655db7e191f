#!/usr/bin/env python3
"""Seed corpus for the `config` target: valid config.json files (runc spec's, rootless, with
docker's seccomp profile, and one with devices, resources, id maps, sysctls and hooks)."""
import json
import os
import subprocess

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "config")
os.makedirs(out, exist_ok=True)

def spec(rootless):
    berth = os.environ.get("BERTH", os.path.join(here, "../../target/x86_64-unknown-linux-musl/release/berth"))
    d = subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip()
    args = [berth, "spec", "--bundle", d] + (["--rootless"] if rootless else [])
    subprocess.run(args, check=True)
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    subprocess.run(["rm", "-rf", d], check=True)
    return c

base = spec(False)
seeds = {"base": base, "rootless": spec(True)}
docker = json.loads(json.dumps(base))
with open(os.path.join(here, "../src/seccomp/testdata/docker-default.oci.json")) as f:
    docker["linux"]["seccomp"] = json.load(f)
seeds["docker"] = docker
rich = json.loads(json.dumps(base))
rich["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]
rich["linux"]["resources"] = {
    "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
    "memory": {"limit": 67108864, "swap": 134217728},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "pids": {"limit": 64},
}
rich["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
rich["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
rich["linux"]["namespaces"].append({"type": "user"})
rich["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
rich["hooks"] = {"prestart": [{"path": "/bin/true", "timeout": 5}]}
seeds["rich"] = rich
for name, c in seeds.items():
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(c, f)
print("wrote", len(seeds), "seeds to", out)
