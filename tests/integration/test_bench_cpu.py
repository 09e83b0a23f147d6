"""The benchmark's CPU figures count the database server too: a server that forks a process per client
(PostgreSQL) is measured with its children, those alive and those that have exited (songdaojia/stack.py
`server_cpu_seconds`), and the benchmark finds the PostgreSQL server a run uses (songdaojia/demo.py)."""
from __future__ import annotations

import math
import os
import select
import subprocess
import sys
import textwrap

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from songdaojia.demo import _database_pid, kernel_shares
from songdaojia.stack import process_cpu_seconds, server_cpu_seconds, system_cpu_seconds

BURN = 0.4  # CPU seconds each child spends

FORKING_SERVER = textwrap.dedent(f"""
    import os, sys, time

    def burn():
        while time.process_time() < {BURN}:
            pass

    gone = os.fork()
    if gone == 0:
        burn()
        os._exit(0)
    os.waitpid(gone, 0)  # a client that came and went
    burnt, told = os.pipe()
    alive = os.fork()
    if alive == 0:
        burn()
        os.write(told, b"x")
        time.sleep(3600)  # a client still connected
        os._exit(0)
    os.read(burnt, 1)
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
""")


def test_a_forking_server_s_cpu_counts_its_children_alive_and_exited():
    server = subprocess.Popen([sys.executable, "-c", FORKING_SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)  # a deadline, should a child hang
        assert ready and server.stdout.readline().strip() == "ready"  # both children have burnt their share
        own, with_children = process_cpu_seconds(server.pid), server_cpu_seconds(server.pid)
        assert own < BURN  # the parent itself only waited
        assert with_children - own >= 2 * BURN * 0.9  # clock ticks round each down a little
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def test_a_process_that_is_not_there_has_no_figure():
    assert math.isnan(server_cpu_seconds(2 ** 22 + 1))
    assert math.isnan(system_cpu_seconds(2 ** 22 + 1))


SPENDS = {  # what a process does until it has used 0.4 CPU seconds, then waits for its stdin to close
    "the kernel": "f = os.open('/dev/zero', os.O_RDONLY)\nwhile time.process_time() < 0.4:\n    os.read(f, 1 << 20)",
    "the interpreter": "while time.process_time() < 0.4:\n    sum(range(1000))",
}


@pytest.mark.parametrize("where", SPENDS)
def test_the_kernel_s_part_of_a_process_s_cpu_is_told_apart(where):
    code = f"import os, sys, time\n{SPENDS[where]}\nprint('done', flush=True)\nsys.stdin.read()"
    spender = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([spender.stdout], [], [], 30)
        assert ready and spender.stdout.readline().strip() == "done"
        spent, in_kernel = process_cpu_seconds(spender.pid), system_cpu_seconds(spender.pid)
    finally:
        spender.stdin.close()
        spender.wait()
    assert spent >= 0.35
    if where == "the kernel":  # copying a megabyte of zeros a call: nearly all of it in the kernel
        assert in_kernel > 0.6 * spent
    else:
        assert in_kernel < 0.3 * spent  # the interpreter's start-up reads files; the loop makes no system call


def test_the_kernel_share_is_of_each_process_s_cpu_over_the_run():
    shares = kernel_shares(cpu_before={"intake": 1.0, "rabbitmq": 2.0, "gone": 1.0},
                           cpu_after={"intake": 3.0, "rabbitmq": 2.0, "gone": 1.5},
                           kernel_before={"intake": 0.5, "rabbitmq": 1.0},
                           kernel_after={"intake": 0.7, "rabbitmq": 1.0, "gone": 0.2})
    assert shares == {"intake": "10%"}  # 0.2 of 2.0 s; no CPU spent, or no figure before: no share


def test_the_benchmark_finds_the_postgresql_server_it_uses_and_sees_it_work(postgres_admin_url):
    pid = _database_pid(postgres_admin_url)
    if pid is None and os.geteuid() != 0:
        pytest.skip("the PostgreSQL server's sockets are another user's to look at")
    assert pid is not None, "PostgreSQL listens on this machine, yet the benchmark did not find it"
    with open(f"/proc/{pid}/comm") as comm:
        assert comm.read().strip() in ("postgres", "postmaster")
    url = make_url(postgres_admin_url)
    conn = psycopg2.connect(**url.translate_connect_args(username="user", database="dbname"))
    try:  # a client connected, as the services' pools stay for a run: its backend's work counts
        before = server_cpu_seconds(pid)
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM generate_series(1, 3000000)")
            assert cursor.fetchone() == (3000000,)
        assert server_cpu_seconds(pid) - before > 0.05
    finally:
        conn.close()
