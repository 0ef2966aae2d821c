"""Every file the project reads goes through one set of readers (``grpo_align.files``).

Issue 18, items 1, 5, 6, 8 and the parsing parts of 9: STATS files (``predict``), prompts
files (``measure --prompts``), ``--config`` files (TOML, YAML, JSON, flags) and ``explain
FILE`` are regular files only (a FIFO, a device, a link to ``/dev/zero`` or a folder is a
one-line exit 2 at once, with no hang and no memory growth), UTF-8 (a byte-order mark is
dropped everywhere; other bytes name the file, the byte offset and the fix), streamed
with caps on a line (STATS) or read whole with a cap on the size (configs); gzip errors,
CSV cells over the csv module's limit, counts past 2**53, keys or columns given twice and
YAML alias bombs are refused in one line naming the file and the fix.

The cases that could hang or grow without bound on a regression run the command in a
subprocess with a timeout (and a memory limit), so that they fail instead.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from grpo_align import files, mappings
from grpo_align.cli import main
from grpo_align.errors import InputError
from grpo_align.files import (
    TextLines,
    csv_delimiter,
    loads_json,
    open_regular_file,
    read_csv,
    read_text_file,
)
from grpo_align.lm.measure import load_prompts
from grpo_align.mappings import MAX_YAML_NODES, load_config_file
from grpo_align.predict.config import load_spec_with_source
from grpo_align.predict.stats import MAX_COUNT, StatsReader

SRC = Path(__file__).resolve().parents[1] / "src"
BOM = b"\xef\xbb\xbf"
STATS = "prompt_id,n,correct\na,4,1\nb,8,6\n"
TOML_ALGO = "[algorithm]\ngroup_size = 4\nbeta = 0.1\n"


def _yaml_bomb(levels: int = 9, width: int = 9) -> str:
    """Billion laughs: ``width`` aliases of ``width`` aliases of ... ``levels`` deep."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _cli(argv: list[str], tmp: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``grpo-align ARGV`` in a subprocess of this worktree's code, limited in time and memory."""

    def limit_memory() -> None:  # a regression that reads /dev/zero stops at 4 GiB, not at swap
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "120"}
    env.pop("GRPO_ALIGN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "grpo_align.cli", *argv],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit_memory,
    )


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _main_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """``cli.main(argv)`` in this process: exit 2 and one line on stderr holding ``words``."""
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (status, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------- item 1: non-regular files
def _fifo(tmp: Path, name: str) -> Path:
    os.mkfifo(tmp / name)
    return tmp / name


def _zero_link(tmp: Path, name: str) -> Path:
    (tmp / name).symlink_to("/dev/zero")
    return tmp / name


def test_open_regular_file_refuses_other_nodes_at_once(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.csv"))
    try:
        nodes = {
            _fifo(tmp_path, "p.csv"): "a FIFO (named pipe)",
            Path("/dev/zero"): "a device",
            _zero_link(tmp_path, "z.csv"): "a device (through a symbolic link)",
            tmp_path: "a folder",
            tmp_path / "s.csv": "a socket",
        }
        for path, kind in nodes.items():
            start = time.monotonic()
            # a socket cannot be opened at all: the system says so (an OSError, exit 2 too)
            with pytest.raises((InputError, OSError)) as info:
                open_regular_file(path)
            assert time.monotonic() - start < 5
            if isinstance(info.value, InputError):
                assert str(info.value) == f"{path}: is {kind}; expected a regular file"
    finally:
        sock.close()
    (tmp_path / "f.txt").write_bytes(b"abc")
    (tmp_path / "l.txt").symlink_to(tmp_path / "f.txt")
    with open_regular_file(tmp_path / "l.txt") as fh:  # a link to a regular file is read
        assert fh.read() == b"abc"
        assert os.get_blocking(fh.fileno())  # O_NONBLOCK cleared for the reader


@pytest.mark.parametrize(
    "make, argv, words",
    [
        (lambda t: _fifo(t, "s.csv"), ["predict", "s.csv", "--preset", "trl", "--out", "o"], ("FIFO",)),
        (lambda t: _fifo(t, "s.jsonl"), ["predict", "s.jsonl", "--preset", "trl", "--out", "o"], ("FIFO",)),
        (lambda t: _fifo(t, "s.parquet"), ["predict", "s.parquet", "--preset", "trl", "--out", "o"], ("FIFO",)),
        (lambda t: _zero_link(t, "s.csv"), ["predict", "s.csv", "--preset", "trl", "--out", "o"], ("device",)),
        (
            lambda t: _zero_link(t, "s.jsonl.gz"),
            ["predict", "s.jsonl.gz", "--preset", "trl", "--out", "o"],
            ("device",),
        ),
        (lambda t: _fifo(t, "c.yaml"), ["predict", "s.csv", "--config", "c.yaml", "--out", "o"], ("c.yaml", "FIFO")),
        (lambda t: _fifo(t, "c.toml"), ["predict", "s.csv", "--config", "c.toml", "--out", "o"], ("c.toml", "FIFO")),
        (lambda t: _fifo(t, "c.json"), ["explain", "c.json"], ("c.json", "FIFO")),
        (lambda t: _fifo(t, "flags.txt"), ["explain", "flags.txt"], ("flags.txt", "FIFO")),
        (lambda t: None, ["explain", "/dev/zero"], ("/dev/zero", "device")),
        (lambda t: _zero_link(t, "c.yaml"), ["explain", "c.yaml"], ("c.yaml", "device")),
        (lambda t: _fifo(t, "p.toml"), ["solve", "p.toml"], ("p.toml", "FIFO")),
        (lambda t: _zero_link(t, "p.toml"), ["train", "p.toml", "--out", "run"], ("p.toml", "device")),
    ],
    ids=[
        "STATS CSV FIFO",
        "STATS JSONL FIFO",
        "STATS Parquet FIFO",
        "STATS link to /dev/zero",
        "STATS .gz link to /dev/zero",
        "--config YAML FIFO",
        "--config TOML FIFO",
        "explain JSON FIFO",
        "explain flags FIFO",
        "explain /dev/zero",
        "explain link to /dev/zero",
        "solve FIFO",
        "train link to /dev/zero",
    ],
)
def test_non_regular_inputs_exit_2_at_once(make, argv, words, tmp_path):
    make(tmp_path)
    if not os.path.lexists(tmp_path / "s.csv"):
        (tmp_path / "s.csv").write_text(STATS)
    start = time.monotonic()
    proc = _cli(argv, tmp_path)
    _one_line_exit_2(proc, *words, "expected a regular file")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("predictions*"))


def test_prompts_file_refused_when_not_regular(tmp_path):
    with pytest.raises(InputError, match="FIFO"):
        load_prompts(_fifo(tmp_path, "p.jsonl"))
    with pytest.raises(InputError, match=r"device \(through a symbolic link\)"):
        load_prompts(_zero_link(tmp_path, "p.csv"))
    with pytest.raises(InputError, match="no such file"):
        load_prompts(tmp_path / "none.jsonl")


# ---------------------------------------------------------------------------- streaming and caps
def test_a_stats_file_over_the_whole_file_cap_streams(tmp_path, monkeypatch):
    """No STATS size cap: a file far over MAX_INPUT_BYTES (and over READ_BLOCK) is read in chunks."""
    monkeypatch.setattr(files, "MAX_INPUT_BYTES", 1000)
    monkeypatch.setattr(files, "READ_BLOCK", 4096)
    rows = 50_000
    path = tmp_path / "s.csv"
    path.write_text("prompt_id,n,correct\n" + "".join(f"p{i},16,{i % 17}\n" for i in range(rows)))
    assert path.stat().st_size > 100 * 1000
    reader = StatsReader(path, chunk_size=7000)
    sizes = [len(chunk) for chunk in reader]
    assert sizes == [7000] * 7 + [1000]
    assert reader.total_rows() == rows


def test_stats_are_decoded_as_they_are_read(tmp_path, monkeypatch):
    """A bad byte at line 30001 is found in the chunk that holds it, after two good chunks:
    the file is not read (or decoded) whole up front."""
    monkeypatch.setattr(files, "READ_BLOCK", 4096)
    path = tmp_path / "s.csv"
    body = "".join(f"p{i},16,3\n" for i in range(30_000))
    path.write_bytes(b"prompt_id,n,correct\n" + body.encode() + b"bad,\xff,1\n")
    chunks = iter(StatsReader(path, chunk_size=10_000))
    assert [len(next(chunks)) for _ in range(3)] == [10_000] * 3
    offset = len(b"prompt_id,n,correct\n" + body.encode()) + 4
    with pytest.raises(InputError) as info:
        next(chunks)
    assert str(info.value) == (
        f"{path}, line 30002: not a UTF-8 text file (byte 0xff at byte offset {offset} is not UTF-8); save it as UTF-8"
    )


def test_memory_stays_bounded_while_streaming(tmp_path, monkeypatch):
    """Reading a 20 MB STATS file in chunks of 200 rows holds a small part of it at a time."""
    monkeypatch.setattr(files, "READ_BLOCK", 64 * 1024)
    path = tmp_path / "s.jsonl"
    with path.open("w") as fh:
        for i in range(5000):
            fh.write(json.dumps({"prompt_id": f"p{i}", "n": 16, "correct": i % 17, "note": "x" * 4000}) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        rows = sum(len(chunk) for chunk in StatsReader(path, chunk_size=200))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 5000
    # one chunk's rows (0.8 MB), a few read blocks and the ids of every prompt (kept to catch
    # duplicates), not the file
    assert peak < size / 8, (peak, size)


def test_an_endless_line_stops_at_the_line_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 64 * 1024)
    monkeypatch.setattr(files, "READ_BLOCK", 4096)
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"prompt_id": "a", "p0": 0.5}\n' + b"0" * 10**6)
    with pytest.raises(InputError) as info:
        list(StatsReader(path))
    assert (
        str(info.value)
        == f"{path}, line 2: is longer than 64 KiB; expected one record per line (is this the right file?)"
    )


def test_an_endless_line_of_a_real_file_is_refused_in_a_subprocess(tmp_path):
    """8 MiB (files.MAX_LINE_BYTES) into a 64 MiB line of zeros the read stops, memory bounded."""
    with (tmp_path / "s.csv").open("wb") as fh:
        fh.write(b"prompt_id,n,correct\n")
        fh.truncate(64 * 2**20)  # a sparse file: 64 MiB of zero bytes with no line break
    proc = _cli(["predict", "s.csv", "--preset", "trl", "--out", "o"], tmp_path)
    _one_line_exit_2(proc, "s.csv, line 2", "longer than 8 MiB")


def test_text_lines_break_at_every_line_ending_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "READ_BLOCK", 3)  # "\r\n" split across blocks too
    path = tmp_path / "t.txt"
    path.write_bytes(BOM + b"ab\r\ncd\ref\n\ngh")
    with TextLines(path) as lines:
        assert list(lines) == ["ab\r\n", "cd\r", "ef\n", "\n", "gh"]
        assert lines.line_no == 5 and lines.offset == path.stat().st_size


def test_a_record_over_lines_is_capped(tmp_path, monkeypatch):
    """A CSV record of many quoted cells over line breaks stops at the record cap."""
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "s.csv"
    path.write_text("prompt_id,a\n" + '"x\ny",' * 500 + "1\n")
    _, rows, _ = read_csv(path)
    with pytest.raises(InputError, match=r"line \d+: a record runs over 1000 bytes of lines; look for a quote"):
        list(rows)


# ---------------------------------------------------------------------------- item 6: encodings, gzip, CSV limits
def test_read_text_file_drops_a_bom_and_names_a_bad_byte(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(BOM + b"beta: 0.1\n")
    assert read_text_file(path) == "beta: 0.1\n"
    path.write_bytes(b"beta: 0.1\nname: caf\xe9\n")
    with pytest.raises(InputError) as info:
        read_text_file(path)
    assert str(info.value) == (
        f"{path}: not a UTF-8 text file (byte 0xe9 at byte offset 19 is not UTF-8); save it as UTF-8"
    )


@pytest.mark.parametrize(
    "name, content, words",
    [
        (
            "s.csv",
            b"prompt_id,n,correct\na,4,\xff\n",
            ("s.csv, line 2", "byte 0xff at byte offset 24", "save it as UTF-8"),
        ),
        ("s.jsonl", b'{"prompt_id": "a\xc3", "p0": 0.5}\n', ("s.jsonl, line 1", "byte offset 16", "save it as UTF-8")),
        (
            "s.csv.gz",
            gzip.compress(b"prompt_id,n,correct\na,4,\xfe\n"),
            ("byte 0xfe at byte offset 24 of the decompressed text", "save it as UTF-8"),
        ),
        ("s.csv.gz", gzip.compress(STATS.encode() * 50)[:-30], ("s.csv.gz", "truncated", "copy the file again")),
        (
            "s.csv.gz",
            gzip.compress(STATS.encode())[:5],
            (
                "s.csv.gz",
                "truncated",
            ),
        ),
        ("s.csv.gz", STATS.encode(), ("s.csv.gz: is not gzip-compressed; decompress it or drop the .gz suffix",)),
        ("s.jsonl.gz", gzip.compress(b'{"prompt_id": "a", "p0": 0.5}\n') + b"junk", ("not gzip data after",)),
        (
            "s.csv",
            ('prompt_id,rewards\na,"' + "1 " * 70_000 + '"\n').encode(),
            ("s.csv, line 2", "131072", "JSON Lines"),
        ),
        (
            "s.csv",
            b'prompt_id,p0\na,0.5\n"b,0.3\n' + b"x" * 200_000 + b"\n",
            ("s.csv, line 4", "is a quote not closed?"),
        ),
    ],
    ids=[
        "CSV not UTF-8",
        "JSONL not UTF-8",
        "gzipped CSV not UTF-8",
        "truncated .csv.gz",
        "truncated .csv.gz header",
        ".gz not gzip",
        "junk after the gzip data",
        "CSV cell over the field limit",
        "unclosed quote",
    ],
)
def test_bad_stats_bytes_are_exit_2(name, content, words, tmp_path, capsys):
    (tmp_path / name).write_bytes(content)
    _main_exit_2(["predict", str(tmp_path / name), "--preset", "trl", "--out", str(tmp_path / "o")], capsys, *words)
    assert not (tmp_path / "o" / "predictions.csv").exists()


@pytest.mark.parametrize(
    "name, content, argv",
    [
        ("c.yaml", b"beta: 0.1\nloss_type: \xff\n", ["explain", "{f}"]),
        ("c.json", b'{"beta": "\xff"}', ["explain", "{f}"]),
        ("flags.txt", b"--init_kl_coef 0.01 # \xff\n", ["explain", "{f}"]),
        ("c.toml", b"[algorithm]\nbeta = 0.1 # \xff\n", ["predict", "{s}", "--config", "{f}", "--out", "{o}"]),
        ("c.yaml", b"beta: \xc3\n", ["predict", "{s}", "--config", "{f}", "--out", "{o}"]),
        ("p.toml", b"[problem]\nref = [0.5, 0.5] # \xff\n", ["solve", "{f}"]),
    ],
    ids=["explain YAML", "explain JSON", "explain flags", "predict TOML", "predict YAML", "solve TOML"],
)
def test_config_files_not_utf8_are_exit_2(name, content, argv, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(content)
    (tmp_path / "s.csv").write_text(STATS)
    argv = [a.format(f=path, s=tmp_path / "s.csv", o=tmp_path / "o") for a in argv]
    offset = content.index(b"\xff") if b"\xff" in content else content.index(b"\xc3")
    _main_exit_2(argv, capsys, f"{path}: not a UTF-8 text file", f"byte offset {offset}", "save it as UTF-8")


@pytest.mark.parametrize(
    "name, content",
    [("c.toml", TOML_ALGO), ("c.json", '{"beta": 0.1, "num_generations": 4}'), ("c.yaml", "beta: 0.1\n")],
)
def test_a_bom_is_accepted_by_every_config_reader(name, content, tmp_path):
    path = tmp_path / name
    path.write_bytes(BOM + content.encode())
    algo, _ = load_spec_with_source(path)
    assert algo.beta == 0.1
    if name != "c.toml":
        assert load_config_file(path)["beta"] == 0.1


def test_explain_and_predict_read_a_bom(tmp_path, capsys):
    (tmp_path / "c.json").write_bytes(BOM + b'{"beta": 0.1, "num_generations": 4}')
    (tmp_path / "c.toml").write_bytes(BOM + TOML_ALGO.encode())
    (tmp_path / "s.csv").write_bytes(BOM + STATS.encode())
    assert main(["explain", str(tmp_path / "c.json"), "--no-predict", "--brief"]) == 0
    assert "beta=0.1" in capsys.readouterr().out
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "s.csv"), "--config", str(tmp_path / "c.toml"), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["prompts"] == 2


# ---------------------------------------------------------------------------- item 5: counts that do not fit
def _parquet(path: Path, n: list, correct: list, n_type: str = "int64") -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    types = {"int64": pa.int64(), "uint64": pa.uint64(), "float64": pa.float64()}
    table = pa.table(
        {
            "prompt_id": [f"p{i}" for i in range(len(n))],
            "n": pa.array(n, types[n_type]),
            "correct": pa.array(correct, types[n_type]),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    "n, n_type, shown",
    [
        (1e20, "float64", "1e+20"),
        (2**63 - 1, "int64", "9223372036854775807"),
        (2**64 - 1, "uint64", "18446744073709551615"),
        (2**53 + 1, "int64", "9007199254740993"),  # float64 would round it to 2**53
    ],
)
def test_parquet_counts_past_2_53_are_refused(n, n_type, shown, tmp_path):
    path = _parquet(tmp_path / "s.parquet", [4, n], [1, 1], n_type)
    with pytest.raises(InputError) as info:
        list(StatsReader(path))
    assert str(info.value) == (
        f"{path}, row 2, column n: {shown} is above 2**53 = 9007199254740992, the largest count a float64 "
        "holds exactly; expected a count of sampled completions"
    )


def test_counts_up_to_2_53_are_exact(tmp_path):
    path = _parquet(tmp_path / "s.parquet", [MAX_COUNT, 2**53 - 1], [MAX_COUNT - 1, 3])
    chunk = next(iter(StatsReader(path)))
    assert [int(x) for x in chunk.n] == [2**53, 2**53 - 1]
    assert int(chunk.correct[0]) == 2**53 - 1


@pytest.mark.parametrize(
    "name, content, where, shown",
    [
        ("s.csv", "prompt_id,n,correct\na,9223372036854775807,1\n", "line 2, column n", "9223372036854775807"),
        ("s.csv", "prompt_id,n,correct\na,1e20,1\n", "line 2, column n", "1e20"),
        ("s.csv", "prompt_id,n,correct\na,20,9007199254740993\n", "line 2, column correct", "9007199254740993"),
        (
            "s.jsonl",
            '{"prompt_id": "a", "n": 9223372036854775807, "correct": 1}\n',
            "line 1, column n",
            "9223372036854775807",
        ),
        ("s.jsonl", '{"prompt_id": "a", "n": 1e20, "correct": 1}\n', "line 1, column n", "1e+20"),
        (
            "s.jsonl",
            '{"prompt_id": "a", "n": ' + "9" * 400 + ', "correct": 1}\n',
            "line 1, column n",
            "a number of 400 characters",
        ),
    ],
)
def test_text_counts_past_2_53_are_refused(name, content, where, shown, tmp_path):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        list(StatsReader(path))
    assert str(info.value).startswith(f"{path}, {where}: {shown} is above 2**53 = 9007199254740992")


def test_a_huge_count_is_exit_2_through_predict(tmp_path, capsys):
    path = _parquet(tmp_path / "s.parquet", [2**63 - 1], [1])
    _main_exit_2(
        ["predict", str(path), "--preset", "trl", "--out", str(tmp_path / "o")], capsys, "row 1, column n", "2**53"
    )


# ---------------------------------------------------------------------------- item 8: YAML alias bombs
def test_a_yaml_alias_bomb_is_refused_while_composed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(_yaml_bomb())
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        load_config_file(path)
    assert time.monotonic() - start < 5
    assert str(info.value).endswith(
        f"expands to more than {MAX_YAML_NODES} values (aliases counted at what they name); expected a trainer config"
    )
    assert str(info.value).startswith(f"{path}, line ")


def test_a_yaml_alias_bomb_is_exit_2_in_a_subprocess(tmp_path):
    (tmp_path / "c.yaml").write_text(_yaml_bomb())
    (tmp_path / "s.csv").write_text(STATS)
    _one_line_exit_2(_cli(["explain", "c.yaml"], tmp_path), "c.yaml", "expands to more than")
    _one_line_exit_2(_cli(["predict", "s.csv", "--config", "c.yaml", "--out", "o"], tmp_path), "expands to more than")
    assert not (tmp_path / "o" / "predictions.csv").exists()


def test_yaml_aliases_within_the_cap_are_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("shared: &s {beta: 0.1}\nother: *s\nlist: [*s, *s]\n")
    assert load_config_file(path)["other"] == {"beta": 0.1}
    path.write_text(_yaml_bomb(levels=4, width=9))  # 9**4 = 6561 strings: under the cap
    assert len(load_config_file(path)["l3"]) == 9


def test_yaml_node_count_includes_plain_nodes(tmp_path, monkeypatch):
    monkeypatch.setattr(mappings, "MAX_YAML_NODES", 100)
    path = tmp_path / "c.yaml"
    path.write_text("x: [" + ", ".join(["1"] * 97) + "]\n")  # 1 + 2 * 1 + 97 nodes
    assert len(load_config_file(path)["x"]) == 97
    path.write_text("x: [" + ", ".join(["1"] * 98) + "]\n")
    with pytest.raises(InputError, match="expands to more than"):
        load_config_file(path)


def test_a_yaml_alias_inside_its_own_node_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(InputError) as info:
        load_config_file(path)
    assert str(info.value) == f"{path}, line 1: an alias (*name) inside the node it names; expected a tree of settings"


def test_yaml_nested_too_deeply_is_an_input_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(InputError, match="nested too deeply"):
        load_config_file(path)


def test_config_size_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_INPUT_BYTES", 1024)
    path = tmp_path / "c.yaml"
    path.write_text("beta: 0.1\n" + "#" * 2000 + "\n")
    with pytest.raises(InputError) as info:
        load_config_file(path)
    assert str(info.value) == f"{path}: is larger than 1 KiB; expected a trainer config file"


# ---------------------------------------------------------------------------- item 9: parsing
@pytest.mark.parametrize(
    "name, delimiter",
    [
        ("s.csv", ","),
        ("s.tsv", "\t"),
        ("S.TSV", "\t"),
        ("s.tsv.gz", "\t"),
        ("my.tsv.backup.csv", ","),
        ("my.tsv.backup.csv.gz", ","),
        ("tsv.csv", ","),
        ("a.csv.tsv", "\t"),
    ],
)
def test_only_the_last_suffix_picks_the_delimiter(name, delimiter):
    assert csv_delimiter(name) == delimiter


def test_a_tsv_in_the_middle_of_a_name_keeps_commas(tmp_path):
    path = tmp_path / "my.tsv.backup.csv"
    path.write_text("prompt_id,n,correct\na,4,1\n")
    chunk = next(iter(StatsReader(path)))
    assert chunk.prompt_id == ["a"] and list(chunk.n) == [4.0]
    gz = tmp_path / "my.tsv.backup.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert next(iter(StatsReader(gz))).prompt_id == ["a"]
    prompts = tmp_path / "my.tsv.prompts.csv"
    prompts.write_text("prompt_id,prompt\na,hello\tworld\n")
    assert load_prompts(prompts).prompt == ["hello\tworld"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "s.csv",
            "prompt_id,n,correct,n\na,4,1,5\n",
            "{p}, line 1: column 'n' appears twice in the header (columns 2 and 4); give each column once",
        ),
        (
            "s.tsv",
            "prompt_id\tp0\t p0 \na\t0.5\t0.6\n",
            "{p}, line 1: column 'p0' appears twice in the header (columns 2 and 3); give each column once",
        ),
        (
            "s.jsonl",
            '{"prompt_id": "a", "p0": 0.5}\n{"prompt_id": "b", "p0": 0.5, "p0": 0.9}\n',
            "{p}, line 2: key 'p0' appears twice in one object; give each key once",
        ),
    ],
)
def test_duplicate_stats_columns_are_refused(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        list(StatsReader(path))
    assert str(info.value) == message.format(p=path)


def test_duplicate_prompt_columns_are_refused(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt_id,prompt,prompt\na,x,y\n")
    with pytest.raises(InputError, match="column 'prompt' appears twice in the header"):
        load_prompts(path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "x", "prompt": "y"}\n')
    with pytest.raises(InputError, match="line 1: key 'prompt' appears twice"):
        load_prompts(path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("c.json", '{"beta": 0.1, "beta": 0.2}', "{p}: key 'beta' appears twice in one object; give each key once"),
        (
            "c.json",
            '{"algorithm": {"kl_ctrl": {"kl_coef": 0.1, "kl_coef": 0.2}}}',
            "{p}: key 'kl_coef' appears twice in one object; give each key once",
        ),
        (
            "c.yaml",
            "beta: 0.1\nloss_type: grpo\nbeta: 0.2\n",
            "{p}, line 3: key 'beta' appears twice in one mapping (first at line 1); give each key once",
        ),
        (
            "c.yaml",
            "algorithm:\n  kl_ctrl:\n    kl_coef: 0.1\n    kl_coef: 0.2\n",
            "{p}, line 4: key 'kl_coef' appears twice in one mapping (first at line 3); give each key once",
        ),
        (
            "c.yaml",
            "{beta: 0.1, beta: 0.1}\n",
            "{p}, line 1: key 'beta' appears twice in one mapping (first at line 1); give each key once",
        ),
    ],
)
def test_duplicate_config_keys_are_refused(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_config_file(path)
    assert str(info.value) == message.format(p=path)


def test_yaml_merge_keys_may_override(tmp_path):
    """``<<: *base`` then a key of base is YAML's override, not a duplicate."""
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {beta: 0.1, loss_type: grpo}\nrun:\n  <<: *b\n  beta: 0.2\n")
    assert load_config_file(path)["run"] == {"beta": 0.2, "loss_type": "grpo"}


def test_duplicate_config_keys_are_exit_2(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("beta: 0.1\nbeta: 0.2\n")
    _main_exit_2(["explain", str(tmp_path / "c.yaml")], capsys, "key 'beta' appears twice")


@pytest.mark.parametrize(
    "name, content",
    [
        ("flags.txt", "# python3 -m openrlhf.cli.train_ppo_ray\n"),
        ("flags.txt", "# run with --init_kl_coef 0.01 later\n\n"),
        ("flags.txt", ""),
        ("flags.sh", "   \n\n"),
        ("c.yaml", "# a comment\n"),
        ("c.yaml", ""),
        ("c.yaml", "---\n...\n"),
        ("c.json", "null"),
    ],
)
def test_a_config_with_no_settings_is_refused(name, content, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_config_file(path)
    assert str(info.value).startswith(f"{path}: holds no settings; expected a trainer config")
    _main_exit_2(["explain", str(path)], capsys, "holds no settings")


def test_flags_after_a_comment_are_still_flags(tmp_path):
    path = tmp_path / "flags.txt"
    path.write_text("# OpenRLHF\n--init_kl_coef 0.01 --n_samples_per_prompt 4  # the group\n")
    config = load_config_file(path)
    assert config["init_kl_coef"] == "0.01" and config["n_samples_per_prompt"] == "4"


def test_an_explicit_empty_mapping_is_still_the_defaults(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{}")
    assert load_config_file(path) == {}


def test_loads_json_refuses_what_json_loads_lets_through():
    assert loads_json('{"a": {"b": 1}, "c": [{"b": 2}]}', "x", "expected y") == {"a": {"b": 1}, "c": [{"b": 2}]}
    with pytest.raises(InputError, match=r"^x: key 'b' appears twice in one object; give each key once$"):
        loads_json('[{"b": 1, "b": 1}]', "x", "expected y")
    with pytest.raises(InputError, match=r"^x: malformed JSON \(Expecting value, line 2 column 1\); expected y$"):
        loads_json("[1,\n]", "x", "expected y")
    with pytest.raises(InputError, match=r"^x: unreadable JSON \(Exceeds the limit"):
        loads_json("1" * 5000, "x", "expected y")
    with pytest.raises(InputError, match="nested too deeply"):
        loads_json("[" * 100_000 + "]" * 100_000, "x", "expected y")


def test_a_fifo_in_place_of_a_checkpoint_is_refused_by_resume(tmp_path):
    """``train --resume`` reads the run folder's checkpoints: a FIFO planted there is not read."""
    pytest.importorskip("torch")
    (tmp_path / "p.toml").write_text(
        "[problem]\nref = [0.3, 0.7]\nrewards = [1.0, 0.0]\n[[algorithm]]\ngroup_size = 4\nbeta = 0.5\n"
        "[train]\nsteps = 20\ngroups_per_step = 8\nlr = 1.0\nn_batches = 4\ncheckpoint_every = 10\n"
    )
    argv = ["train", "p.toml", "--out", "run", "--quiet"]
    assert _cli(argv, tmp_path, timeout=300).returncode in (0, 1)
    ckpt = tmp_path / "run" / "checkpoint-0.pt"
    ckpt.unlink()
    os.mkfifo(ckpt)
    _one_line_exit_2(_cli([*argv, "--resume"], tmp_path), "--resume", "checkpoint-0.pt is a FIFO", "delete it")


def test_a_fifo_inside_a_datasets_folder_is_refused(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"prompt_id": ["a", "b"], "p0": [0.2, 0.6]}).save_to_disk(str(folder))
    assert len(next(iter(StatsReader(folder)))) == 2
    data = sorted(folder.glob("*.arrow"))[0]
    data.unlink()
    os.mkfifo(data)
    with pytest.raises(InputError) as info:
        StatsReader(folder)
    assert str(info.value) == f"{data}: is a FIFO (named pipe); expected a regular file"
