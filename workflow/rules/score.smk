# Memorization of every snapshot's samples (d1/d2 < threshold), and the max over snapshots.


rule score:
    input:
        settings=RESULTS / "runs" / "{run_id}" / "n{size}" / "run.json",
        samples=RESULTS / "runs" / "{run_id}" / "n{size}" / "samples.npz",
        subset=get_subset,
    output:
        scores=RESULTS / "runs" / "{run_id}" / "n{size}" / "memorization.json",
        distances=RESULTS / "runs" / "{run_id}" / "n{size}" / "distances.npz",
        nearest=RESULTS / "runs" / "{run_id}" / "n{size}" / "nearest.png",
    log:
        RESULTS / "logs" / "score" / "{run_id}-n{size}.log",
    benchmark:
        RESULTS / "benchmarks" / "score" / "{run_id}-n{size}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/score.py"
