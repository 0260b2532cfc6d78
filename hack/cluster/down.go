package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// down stops what up started, in an order that lets the kubelet and containerd tear the pods
// down themselves (CNI DEL, unmounts), then cleans whatever is left: container processes, shims,
// mounts, pod network namespaces, cgroups, the cluster network namespace and the host paths up
// created. The component logs stay in <state>/logs; the rest of the state folder is removed.
func (c *cluster) down() error {
	if c.alive("kube-apiserver") > 0 && c.alive("kubelet") > 0 && c.alive("containerd") > 0 {
		// No controllers recreating pods, then let the kubelet stop every pod.
		c.stopProc("kube-controller-manager", 10*time.Second)
		c.stopProc("kube-scheduler", 10*time.Second)
		if _, err := c.kubectl(time.Minute, "delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0", "--wait=false"); err != nil {
			logf("warning: %v", err)
		}
		err := waitFor("pods stopped", 90*time.Second, func() error {
			if t := c.tasks(); len(t) > 0 {
				return fmt.Errorf("%d containers still running", len(t))
			}
			return nil
		})
		if err != nil {
			logf("warning: %v", err)
		}
	}
	for _, n := range []string{"traefik", "registry", "kubelet", "kube-proxy", "kube-router", "coredns", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"} {
		c.stopProc(n, 15*time.Second)
	}
	// Whatever the kubelet did not stop.
	if c.alive("containerd") > 0 {
		for id, pid := range c.tasks() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_, _ = run(20*time.Second, "ctr", "--address", c.containerdSock(), "-n", "k8s.io", "tasks", "delete", "-f", id)
		}
	}
	c.stopProc("containerd", 15*time.Second)
	c.killLeftovers()
	c.unmountAll()
	c.removePodNetns()
	if _, err := os.Stat("/run/netns/" + netnsName); err == nil {
		if _, err := run(30*time.Second, "ip", "netns", "del", netnsName); err != nil {
			logf("warning: %v", err)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + hostVeth); err == nil {
		_, _ = run(10*time.Second, "ip", "link", "del", hostVeth)
	}
	c.removeCgroups()
	if b, err := os.ReadFile(c.path("created-paths")); err == nil {
		for _, p := range strings.Fields(string(b)) {
			if err := os.RemoveAll(p); err != nil {
				logf("warning: remove %s: %v", p, err)
			}
		}
	}
	entries, _ := os.ReadDir(c.state)
	for _, e := range entries {
		if e.Name() == "logs" {
			continue
		}
		if err := os.RemoveAll(c.path(e.Name())); err != nil {
			logf("warning: %v", err)
		}
	}
	return c.verifyClean()
}

// tasks lists running containerd tasks (container ID -> host PID).
func (c *cluster) tasks() map[string]int {
	out, err := run(10*time.Second, "ctr", "--address", c.containerdSock(), "-n", "k8s.io", "tasks", "ls")
	if err != nil {
		return nil
	}
	tasks := map[string]int{}
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "RUNNING" {
			if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 {
				tasks[f[0]] = pid
			}
		}
	}
	return tasks
}

// ours lists processes started for this cluster that have no PID file: containerd's shims (they
// name our containerd socket) and container processes (in the kubelet's kubepods cgroups).
func (c *cluster) ours() map[int]string {
	found := map[int]string{}
	procs, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, c.containerdSock()) {
			found[pid] = cmd
			continue
		}
		// A binary up built into the state folder (the registry).
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasPrefix(exe, c.state+"/") {
			found[pid] = cmd
			continue
		}
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if strings.Contains(string(cg), ":/kubepods") {
			found[pid] = cmd
		}
	}
	return found
}

func (c *cluster) killLeftovers() {
	for i := 0; i < 3; i++ {
		left := c.ours()
		if len(left) == 0 {
			return
		}
		for pid, cmd := range left {
			logf("killing leftover pid %d: %s", pid, cmd)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(time.Second)
	}
}

// unmountAll lazily unmounts every mount below the state folder and the fixed host paths up
// created, deepest first.
func (c *cluster) unmountAll() {
	prefixes := []string{c.state + "/"}
	if b, err := os.ReadFile(c.path("created-paths")); err == nil {
		for _, p := range strings.Fields(string(b)) {
			prefixes = append(prefixes, p+"/")
		}
	}
	for pass := 0; pass < 3; pass++ {
		var targets []string
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(mi), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			mp := unescapeMount(f[4])
			for _, p := range prefixes {
				if strings.HasPrefix(mp+"/", p) {
					targets = append(targets, mp)
					break
				}
			}
		}
		if len(targets) == 0 {
			return
		}
		sort.Sort(sort.Reverse(sort.StringSlice(targets)))
		for _, t := range targets {
			if err := syscall.Unmount(t, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				logf("warning: unmount %s: %v", t, err)
			}
		}
	}
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// removePodNetns removes pod network namespaces containerd created that it did not remove.
func (c *cluster) removePodNetns() {
	before := map[string]bool{}
	if b, err := os.ReadFile(c.path("netns-before")); err == nil {
		for _, n := range strings.Fields(string(b)) {
			before[n] = true
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "cni-") || before[e.Name()] {
			continue
		}
		p := filepath.Join("/run/netns", e.Name())
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if err := os.Remove(p); err == nil {
			logf("removed pod network namespace %s", e.Name())
		}
	}
}

// removeCgroups removes the kubelet's (empty) kubepods cgroup trees in every hierarchy.
func (c *cluster) removeCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if u, err := os.Stat("/sys/fs/cgroup/unified/kubepods"); err == nil && u.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/unified/kubepods")
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

// verifyClean fails when a process, mount or interface of the cluster survived.
func (c *cluster) verifyClean() error {
	var problems []string
	for _, n := range components {
		if pid := c.alive(n); pid > 0 {
			problems = append(problems, fmt.Sprintf("%s still runs (pid %d)", n, pid))
		}
	}
	for pid, cmd := range c.ours() {
		problems = append(problems, fmt.Sprintf("pid %d still runs: %s", pid, cmd))
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), " "+c.state+"/") {
		problems = append(problems, "mounts left below "+c.state)
	}
	if _, err := os.Stat("/run/netns/" + netnsName); err == nil {
		problems = append(problems, "network namespace "+netnsName+" still exists")
	}
	if len(problems) > 0 {
		return errors.New("not clean:\n  " + strings.Join(problems, "\n  "))
	}
	logf("clean: no cluster process, mount, network namespace or host route left")
	return nil
}
