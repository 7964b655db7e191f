#!/usr/bin/python3
"""A CRI client (gRPC, runtime.v1) that drives one pod through a containerd's CRI plugin.

Used by shim/tests/cri.rs; runnable by hand against any containerd with the CRI plugin:

    cri_client.py run --socket SOCK --handler berth --image IMG --cgroup-parent /p \
        --log-dir DIR --work TMP --result OUT.json
    cri_client.py cleanup --socket SOCK --work TMP     # stop and remove every pod sandbox

`run`: Version, Status, ImageStatus, RunPodSandbox (host network, the given runtime handler and
cgroup parent), CreateContainer + StartContainer, ContainerStatus, the container's log, ExecSync
(exit 0 and non-zero, stdout and stderr), a second container, the pod's shim count (every
container of a pod must share one shim process), the memory limit in the container's cgroup,
with --restart-file a containerd restart (the pod, its containers and its one shim recovered),
ExecSync past its timeout, UpdateContainerResources, ContainerStats/ListContainerStats, a
container that exits by itself and one that is OOM-killed, StopContainer (SIGTERM handled, and
timeout 0), RemoveContainer, StopPodSandbox, RemovePodSandbox, then that the pod's shim and
processes are gone. Each step is
timed; the timings and ids go to --result as JSON. Exit status 1 with "FAIL <step>: <why>" on the
first failed check.

The Python stubs are generated at run time with grpc_tools.protoc from api.proto (next to this
file) into --work.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CALL_TIMEOUT = 60  # seconds, for every RPC


class Failure(Exception):
    pass


def stubs(work):
    out = os.path.join(work, "cri-stubs")
    os.makedirs(out, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I" + HERE, "--python_out=" + out,
         "--grpc_python_out=" + out, "api.proto"],
        check=True)
    sys.path.insert(0, out)
    import grpc  # noqa: E402
    import api_pb2  # noqa: E402
    import api_pb2_grpc  # noqa: E402
    return grpc, api_pb2, api_pb2_grpc


class Steps:
    """Runs named steps, timing each; the first exception is the test's failure."""

    def __init__(self, handler):
        self.handler = handler
        self.timings = []

    def __call__(self, name, fn, *args):
        start = time.monotonic()
        try:
            result = fn(*args)
        except Failure as e:
            raise Failure(f"{name}: {e}") from None
        except Exception as e:  # grpc.RpcError and the like
            detail = e.details() if hasattr(e, "details") else repr(e)
            raise Failure(f"{name}: {type(e).__name__}: {detail}") from None
        ms = (time.monotonic() - start) * 1000.0
        self.timings.append([name, round(ms, 1)])
        print(f"  {self.handler:<11} {name:<44} {ms:8.1f} ms", flush=True)
        return result


def check(cond, msg):
    if not cond:
        raise Failure(msg() if callable(msg) else msg)


def poll(fn, what, timeout=30.0, interval=0.02):
    """Call fn until it returns a true value; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def shims(socket):
    """Live shim processes of this containerd: pid -> the -id they were started with."""
    found = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        argv = [a.decode(errors="replace") for a in proc_cmdline(e)]
        if not argv or "containerd-shim" not in os.path.basename(argv[0]):
            continue
        if socket not in argv or not alive(e):
            continue
        sid = argv[argv.index("-id") + 1] if "-id" in argv[:-1] else "?"
        found[int(e)] = sid
    return found


def memory_cgroup(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "memory" in ctrls.split(","):
                return "/sys/fs/cgroup/memory" + path, path
            if ctrls == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                return "/sys/fs/cgroup" + path, path  # pure cgroup v2
    raise Failure(f"no memory cgroup for pid {pid}")


def cgroup_memory_limit(pid):
    d, _ = memory_cgroup(pid)
    for f in "memory.limit_in_bytes", "memory.max":
        if os.path.exists(os.path.join(d, f)):
            with open(os.path.join(d, f)) as fh:
                return int(fh.read())
    raise Failure(f"no memory limit file in {d}")


def wait_initialized(grpc, pb, rt):
    """Wait until containerd's CRI serves: after a (re)start it refuses calls ("server is not
    initialized yet", code Unknown) while it recovers its state, and may not listen yet."""
    def answers():
        try:
            return rt.Version(pb.VersionRequest(version="v1"), timeout=5, wait_for_ready=True)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE or "not initialized" in (e.details() or ""):
                return None
            raise

    poll(answers, "containerd's CRI to serve", interval=0.1)


def run(a):
    grpc, pb, pbg = stubs(a.work)
    ch = grpc.insecure_channel("unix://" + a.socket)
    rt = pbg.RuntimeServiceStub(ch)
    im = pbg.ImageServiceStub(ch)
    T = CALL_TIMEOUT
    step = Steps(a.handler)
    result = {"handler": a.handler, "timings": step.timings, "pids": {}}
    tag = f"{a.handler}-{os.getpid()}"
    ns = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
    pod_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"pod-{tag}", uid=str(uuid.uuid4()),
                                       namespace="berth-test", attempt=0),
        log_directory=a.log_dir,
        labels={"berth-test": tag},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=a.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)),
    )
    pod = None
    containers = []
    wait_initialized(grpc, pb, rt)

    def version():
        v = rt.Version(pb.VersionRequest(version="v1"), timeout=T)
        check(v.runtime_name == "containerd", f"runtime_name {v.runtime_name!r}")
        check(v.runtime_api_version == "v1", f"runtime_api_version {v.runtime_api_version!r}")
        return v

    v = step("Version", version)
    result["containerd"] = v.runtime_version

    def status():
        s = rt.Status(pb.StatusRequest(), timeout=T)
        conds = {c.type: c.status for c in s.status.conditions}
        check(conds.get("RuntimeReady"), f"conditions {conds}")
        return conds

    result["conditions"] = step("Status (RuntimeReady)", status)

    def image_present():
        for img in a.image, a.pause_image:
            poll(lambda: rt_image(img), f"image {img} in the CRI image store", timeout=15)

    def rt_image(img):
        r = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=img)), timeout=T)
        return r.image.id

    step("ImageStatus (busybox, pause)", image_present)

    def run_pod():
        r = rt.RunPodSandbox(
            pb.RunPodSandboxRequest(config=pod_config, runtime_handler=a.handler), timeout=T)
        check(r.pod_sandbox_id, "no pod_sandbox_id")
        return r.pod_sandbox_id

    try:
        pod = step("RunPodSandbox", run_pod)
        result["sandbox_id"] = pod

        def pod_status():
            r = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True),
                                    timeout=T)
            check(r.status.state == pb.SANDBOX_READY,
                  f"state {pb.PodSandboxState.Name(r.status.state)}")
            check(r.status.runtime_handler == a.handler,
                  f"runtime_handler {r.status.runtime_handler!r}")
            info = json.loads(r.info.get("info", "{}"))
            check(info.get("pid", 0) > 0, f"no sandbox pid in {sorted(info)}")
            return info["pid"]

        result["pids"]["sandbox"] = step("PodSandboxStatus = READY", pod_status)

        def container_config(name, command, memory=0):
            return pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=name),
                image=pb.ImageSpec(image=a.image),
                command=command,
                envs=[pb.KeyValue(key="BERTH_TEST", value=name)],
                log_path=f"{name}.log",
                linux=pb.LinuxContainerConfig(
                    resources=pb.LinuxContainerResources(memory_limit_in_bytes=memory),
                    security_context=pb.LinuxContainerSecurityContext(namespace_options=ns)),
            )

        def create(cfg):
            r = rt.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=pod, config=cfg, sandbox_config=pod_config), timeout=T)
            check(r.container_id, "no container_id")
            containers.append(r.container_id)
            return r.container_id

        def start(cid):
            rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)

        def cstatus(cid):
            return rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True),
                                      timeout=T)

        def running(cid):
            def is_running():
                return cstatus(cid).status.state == pb.CONTAINER_RUNNING
            poll(is_running, f"container {cid} RUNNING")
            info = json.loads(cstatus(cid).info.get("info", "{}"))
            check(info.get("pid", 0) > 0, "no pid in the container's status")
            return info["pid"]

        mem_limit = 64 << 20
        c1 = step("CreateContainer c1", create, container_config(
            "c1",
            ["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo started $BERTH_TEST; "
                         "sleep 100000 & wait"],
            memory=mem_limit))
        step("StartContainer c1", start, c1)
        result["pids"]["c1"] = step("ContainerStatus c1 = RUNNING", running, c1)

        log1 = os.path.join(a.log_dir, "c1.log")

        def log_has(path, text):
            def found():
                try:
                    with open(path) as f:
                        return text in f.read()
                except OSError:
                    return False
            poll(found, f"{text!r} in {path}", timeout=15)
            with open(path) as f:
                return f.read()

        def first_log_line():
            body = log_has(log1, "started c1")
            # CRI log format: <RFC3339Nano> <stream> <P|F> <line>
            first = body.splitlines()[0].split(" ", 3)
            check(first[1:] == ["stdout", "F", "started c1"], f"log line {body.splitlines()[0]!r}")

        step("container log (CRI format)", first_log_line)

        def exec_sync(cid, cmd, want_out, want_err, want_code):
            r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=30),
                            timeout=T)
            check((r.stdout, r.stderr, r.exit_code) == (want_out, want_err, want_code),
                  f"{cmd}: stdout {r.stdout!r} stderr {r.stderr!r} exit {r.exit_code}; "
                  f"want {want_out!r} {want_err!r} {want_code}")

        step("ExecSync echo hi", exec_sync, c1, ["echo", "hi"], b"hi\n", b"", 0)
        step("ExecSync exit 3 (stdout+stderr)", exec_sync, c1,
             ["sh", "-c", "echo out; echo err >&2; exit 3"], b"out\n", b"err\n", 3)
        step("ExecSync env + pid ns", exec_sync, c1,
             ["sh", "-c", "echo $BERTH_TEST $(cat /proc/1/cmdline | tr '\\0' ' ')"],
             b"c1 sh -c trap 'echo got-term; exit 0' TERM; echo started $BERTH_TEST; "
             b"sleep 100000 & wait\n", b"", 0)

        c2 = step("CreateContainer c2", create, container_config("c2", ["sleep", "100000"]))
        step("StartContainer c2", start, c2)
        result["pids"]["c2"] = step("ContainerStatus c2 = RUNNING", running, c2)
        step("ExecSync in c2", exec_sync, c2, ["cat", "/proc/self/comm"], b"cat\n", b"", 0)

        def one_shim():
            found = shims(a.socket)
            check(len(found) == 1,
                  f"want one shim for the pod (sandbox + 2 containers), found {found}")
            pid, sid = next(iter(found.items()))
            check(sid == pod, f"the shim was started for {sid}, not the sandbox {pod}")
            for name in ("sandbox", "c1", "c2"):
                p = result["pids"][name]
                try:
                    with open(f"/proc/{p}/status") as f:
                        ppid = int([ln for ln in f if ln.startswith("PPid:")][0].split()[1])
                except OSError as e:
                    raise Failure(f"{name} pid {p}: {e}")
                check(ppid == pid, f"{name} (pid {p}) is a child of {ppid}, not of shim {pid}")
            return pid

        result["shim_pid"] = step("one shim for the pod", one_shim)
        with open(f"/proc/{result['shim_pid']}/status") as f:
            rss = [ln.split()[1] for ln in f if ln.startswith("VmRSS:")]
        result["shim_rss_kib"] = int(rss[0]) if rss else 0
        print(f"  {a.handler:<11} {'(VmRSS of the pod shim, 3 containers)':<44} "
              f"{result['shim_rss_kib']:8d} KiB", flush=True)

        def memory_limit():
            _, path = memory_cgroup(result["pids"]["c1"])
            check(path.startswith(a.cgroup_parent + "/"),
                  f"c1's cgroup {path} is not below {a.cgroup_parent}")
            got = cgroup_memory_limit(result["pids"]["c1"])
            check(got == mem_limit, f"memory limit {got}, want {mem_limit}")

        step("c1 cgroup below parent, memory limit", memory_limit)

        if a.restart_file:
            def restart():
                nonlocal ch, rt, im
                # The caller restarts containerd (it owns the process) between .ready and .go.
                with open(a.restart_file + ".ready", "w") as f:
                    f.write(str(result["shim_pid"]))
                poll(lambda: os.path.exists(a.restart_file + ".go"), "containerd's restart",
                     timeout=60)
                # A new channel: the old one's first call would go to the dead connection.
                ch.close()
                ch = grpc.insecure_channel("unix://" + a.socket)
                rt = pbg.RuntimeServiceStub(ch)
                im = pbg.ImageServiceStub(ch)

                wait_initialized(grpc, pb, rt)

            step("containerd restarted (by the caller)", restart)

            def recovered():
                r = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod),
                                        timeout=T)
                check(r.status.state == pb.SANDBOX_READY,
                      f"sandbox {pb.PodSandboxState.Name(r.status.state)} after the restart")
                for cid in c1, c2:
                    st = cstatus(cid).status
                    check(st.state == pb.CONTAINER_RUNNING,
                          f"{cid} {pb.ContainerState.Name(st.state)} after the restart")
                found = shims(a.socket)
                check(list(found) == [result["shim_pid"]],
                      f"shims {found} after the restart, want the same {result['shim_pid']}")

            step("pod, containers and shim recovered", recovered)
            step("ExecSync in c1 after the restart", exec_sync, c1, ["echo", "again"],
                 b"again\n", b"", 0)
            step("ExecSync in c2 after the restart", exec_sync, c2, ["echo", "again"],
                 b"again\n", b"", 0)

        def exec_timeout():
            try:
                rt.ExecSync(pb.ExecSyncRequest(container_id=c1, cmd=["sleep", "33"], timeout=1),
                            timeout=T)
            except grpc.RpcError as e:
                check("timeout" in e.details(), f"error {e.details()!r}, want a timeout")
            else:
                raise Failure("ExecSync of sleep 33 with timeout 1 returned")
            # The exec was killed: nothing but the container's own processes is left.
            r = rt.ExecSync(pb.ExecSyncRequest(container_id=c1, cmd=["ps", "-o", "args"],
                                               timeout=30), timeout=T)
            check(b"sleep 33" not in r.stdout, f"the timed-out exec still runs:\n{r.stdout}")

        step("ExecSync timeout (exec killed)", exec_timeout)

        def update_memory():
            rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
                container_id=c1, linux=pb.LinuxContainerResources(
                    memory_limit_in_bytes=2 * mem_limit)), timeout=T)
            got = cgroup_memory_limit(result["pids"]["c1"])
            check(got == 2 * mem_limit, f"memory limit {got} after update, want {2 * mem_limit}")

        step("UpdateContainerResources c1 (memory)", update_memory)

        def stats():
            r = rt.ContainerStats(pb.ContainerStatsRequest(container_id=c1), timeout=T)
            s = r.stats
            check(s.attributes.id == c1, f"stats for {s.attributes.id!r}")
            check(s.cpu.timestamp > 0 and s.cpu.usage_core_nano_seconds.value > 0,
                  f"cpu {s.cpu}")
            check(s.memory.timestamp > 0 and
                  (s.memory.working_set_bytes.value > 0 or s.memory.usage_bytes.value > 0),
                  f"memory {s.memory}")
            limit = 2 * mem_limit  # as updated above
            check(0 < s.memory.available_bytes.value <= limit,
                  f"available {s.memory.available_bytes.value}, limit {limit}")
            return {"cpu_ns": s.cpu.usage_core_nano_seconds.value,
                    "working_set": s.memory.working_set_bytes.value}

        result["stats"] = step("ContainerStats c1 (cpu, memory)", stats)

        def list_stats():
            r = rt.ListContainerStats(pb.ListContainerStatsRequest(
                filter=pb.ContainerStatsFilter(pod_sandbox_id=pod)), timeout=T)
            ids = sorted(s.attributes.id for s in r.stats)
            check(ids == sorted([c1, c2]), f"stats for {ids}")
            for s in r.stats:
                check(s.cpu.usage_core_nano_seconds.value > 0, f"no cpu for {s.attributes.id}")

        step("ListContainerStats (pod)", list_stats)

        def list_containers(want):
            r = rt.ListContainers(pb.ListContainersRequest(
                filter=pb.ContainerFilter(pod_sandbox_id=pod)), timeout=T)
            got = sorted((c.id, pb.ContainerState.Name(c.state)) for c in r.containers)
            check(got == sorted(want), f"containers {got}, want {sorted(want)}")

        step("ListContainers (2 running)", list_containers,
             [(c1, "CONTAINER_RUNNING"), (c2, "CONTAINER_RUNNING")])

        def exited(cid, want_code, want_reason):
            def done():
                s = cstatus(cid).status
                return s if s.state == pb.CONTAINER_EXITED else None
            s = poll(done, f"container {cid} EXITED")
            check((s.exit_code, s.reason) == (want_code, want_reason) and s.finished_at > 0,
                  f"exit {s.exit_code} reason {s.reason!r} finished_at {s.finished_at}; "
                  f"want exit {want_code} reason {want_reason!r}")

        c3 = step("CreateContainer c3 (exits 7)", create, container_config(
            "c3", ["sh", "-c", "echo bye; exit 7"]))
        step("StartContainer c3", start, c3)
        step("ContainerStatus c3 = EXITED 7 (Error)", exited, c3, 7, "Error")
        step("c3 log has bye", log_has, os.path.join(a.log_dir, "c3.log"), "bye")
        c4 = step("CreateContainer c4 (16 MiB, OOM)", create, container_config(
            "c4", ["sh", "-c", "x=a; while true; do x=$x$x; done"], memory=16 << 20))
        step("StartContainer c4", start, c4)
        step("ContainerStatus c4 = EXITED 137 (OOMKilled)", exited, c4, 137, "OOMKilled")

        def still_one_shim():
            found = shims(a.socket)
            check(list(found) == [result["shim_pid"]],
                  f"shims {found}, want the pod's {result['shim_pid']} only")

        step("still one shim (4 containers)", still_one_shim)

        def stop(cid, timeout, want_code):
            rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=timeout),
                             timeout=T + timeout)
            s = cstatus(cid).status
            check(s.state == pb.CONTAINER_EXITED and s.exit_code == want_code,
                  f"{pb.ContainerState.Name(s.state)} exit {s.exit_code} ({s.reason}), "
                  f"want EXITED exit {want_code}")

        step("StopContainer c1 (SIGTERM, trapped)", stop, c1, 10, 0)
        step("c1 log has got-term", log_has, log1, "got-term")
        step("StopContainer c2 (timeout 0: SIGKILL)", stop, c2, 0, 137)

        def remove(cid):
            rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
            containers.remove(cid)

        step("RemoveContainer c1", remove, c1)
        step("RemoveContainer c2", remove, c2)
        step("RemoveContainer c3", remove, c3)
        step("RemoveContainer c4", remove, c4)
        step("ListContainers (none)", list_containers, [])

        def sandbox_shim_only():
            found = shims(a.socket)
            check(list(found) == [result["shim_pid"]],
                  f"shims {found}, want the pod's {result['shim_pid']} only")
            check(alive(result["pids"]["sandbox"]), "the sandbox process is gone")
            for name in ("c1", "c2"):
                check(not alive(result["pids"][name]), f"{name} still runs")

        step("pod shim still serves the sandbox", sandbox_shim_only)

        def stop_pod():
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=T)
            r = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=T)
            check(r.status.state == pb.SANDBOX_NOTREADY,
                  f"state {pb.PodSandboxState.Name(r.status.state)}")

        step("StopPodSandbox", stop_pod)

        def remove_pod():
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=T)
            r = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T)
            check(pod not in [p.id for p in r.items], "the pod is still listed")

        step("RemovePodSandbox", remove_pod)
        pod = None

        def all_gone():
            poll(lambda: not shims(a.socket), f"no shim left (have {shims(a.socket)})",
                 timeout=15)
            for name, p in result["pids"].items():
                poll(lambda: not alive(p), f"{name} process {p} to go", timeout=15)

        step("shim and pod processes gone", all_gone)
    finally:
        # Best effort after a failure: leave no pod behind (the caller checks and cleans too).
        if pod is not None:
            for cid in list(containers):
                try:
                    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
                except Exception as e:  # noqa: BLE001
                    print(f"cleanup: RemoveContainer {cid}: {e}", file=sys.stderr)
            try:
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=T)
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=T)
            except Exception as e:  # noqa: BLE001
                print(f"cleanup: pod {pod}: {e}", file=sys.stderr)
        if a.result:
            with open(a.result, "w") as f:
                json.dump(result, f, indent=1)
    total = sum(ms for _, ms in step.timings)
    print(f"  {a.handler:<11} {'total':<44} {total:8.1f} ms", flush=True)


def cleanup(a):
    grpc, pb, pbg = stubs(a.work)
    rt = pbg.RuntimeServiceStub(grpc.insecure_channel("unix://" + a.socket))
    wait_initialized(grpc, pb, rt)
    for p in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items:
        print(f"cleanup: removing pod {p.id} ({p.metadata.name})", file=sys.stderr)
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id), timeout=CALL_TIMEOUT)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id),
                            timeout=CALL_TIMEOUT)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["run", "cleanup"])
    ap.add_argument("--socket", required=True, help="containerd's gRPC socket (a path)")
    ap.add_argument("--work", required=True, help="scratch directory (generated stubs)")
    ap.add_argument("--handler", default="runc", help="CRI runtime handler")
    ap.add_argument("--image", default="docker.io/library/busybox:latest")
    ap.add_argument("--pause-image", default="docker.io/library/busybox:latest",
                    help="containerd's sandbox_image (only checked to be present)")
    ap.add_argument("--cgroup-parent", default="/berth-cri-test")
    ap.add_argument("--log-dir", default="/tmp/berth-cri-logs")
    ap.add_argument("--result", help="write ids, pids and timings here (JSON)")
    ap.add_argument("--restart-file",
                    help="mid-run, create FILE.ready and wait for FILE.go while the caller "
                         "restarts containerd; then check that the pod was recovered")
    a = ap.parse_args()
    try:
        run(a) if a.action == "run" else cleanup(a)
    except Failure as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
