"""`tally sql` on a terminal shows a live progress line that is erased before the answer
prints; into a pipe it draws nothing. A pseudo-terminal stands in for the person's terminal."""

from __future__ import annotations

import os
import pty
import subprocess

from conftest import tally_binary

# About two seconds on an embedded 2-worker cluster (debug build): several redraws.
QUERY = ("SELECT count(*) FROM lineitem a, lineitem b "
         "WHERE a.l_orderkey < b.l_orderkey AND a.l_partkey < 400")
ERASE = "\r\x1b[2K"


def command(tpch_data):
    return [str(tally_binary()), "sql", "--workers", "2", "--data-root", str(tpch_data),
            "--table", f"lineitem={tpch_data / 'lineitem'}", "-e", QUERY]


def test_on_a_terminal_the_progress_line_runs_then_gives_way_to_the_answer(tpch_data):
    main, secondary = pty.openpty()
    process = subprocess.Popen(command(tpch_data), stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0, output
    text = output.decode()
    assert ERASE + "job " in text, text
    assert "stages done, tasks " in text and " shuffled, " in text, text
    # The last thing drawn before the answer is the erasure of the line.
    answer = text.index("count(*)")
    last_erase = text.rindex(ERASE)
    assert last_erase < answer, text
    assert "stages done" not in text[last_erase:answer], text


def test_into_a_pipe_nothing_is_drawn(tpch_data):
    done = subprocess.run(command(tpch_data), capture_output=True, text=True, timeout=60, check=True)
    assert "count(*)" in done.stdout
    assert "\x1b[" not in done.stdout + done.stderr, done.stderr
    assert "stages done" not in done.stderr
