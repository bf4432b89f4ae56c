"""`tcpade-trt generate` from engine folders: class labels (DiT), a smoke run with random
conditioning (Wan: an animated preview), warm repeats, and the sentences for wrong requests."""

from PIL import Image

from tcpade_trt.cli import main


def test_dit_labels_with_verbose_steps_and_warm_repeats(fp32_folders, tmp_path, capsys):
    out = tmp_path / "dit.png"
    assert main(["generate", "--engines", str(fp32_folders["tiny-dit"]), "--class", "1", "--class", "3",
                 "--guidance-scale", "4", "--steps", "8", "--verbose", "--repeats", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("  step ") == 8  # the last run's steps only
    assert "runtime overhead" in printed and "warm runtime, median of 2 runs after the first" in printed
    assert Image.open(out).size[0] > 0


def test_a_smoke_run_without_conditioning_previews_wan_latents_as_an_animation(fp32_folders, tmp_path, capsys):
    wan = ["generate", "--engines", str(fp32_folders["tiny-wan"]), "--steps", "4", "--guidance-scale", "5"]
    assert main([*wan, "--out", str(tmp_path / "wan.png")]) == 2  # a video is a GIF: said before the work
    assert "a video model's output is a GIF" in capsys.readouterr().err
    assert main([*wan, "--out", str(tmp_path / "wan.gif")]) == 0
    assert "random conditioning" in capsys.readouterr().out
    assert Image.open(tmp_path / "wan.gif").n_frames == 3


def test_wrong_requests_are_one_sentence(fp32_folders, tmp_path, capsys):
    flux = str(fp32_folders["tiny-flux"])
    assert main(["generate", "--engines", flux, "--class", "cat", "--out", str(tmp_path / "x.png")]) == 2
    assert "--class works with class-conditional models" in capsys.readouterr().err
    assert main(["generate", "--engines", flux, "--prompt", "a cat", "--out", str(tmp_path / "x.png")]) == 2
    assert "--prompt needs --pipeline DIR" in capsys.readouterr().err
    assert main(["generate", "--engines", flux, "--repeats", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "--repeats: must be a whole number >= 1" in capsys.readouterr().err
