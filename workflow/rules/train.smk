# One training run per (training identity, |D|): run.json beside the model, EMA snapshots, resumable state.


localrules:
    run_settings,


rule run_settings:
    output:
        RUN_JSON,
    log:
        RESULTS / "logs" / "run_settings" / f"{JOB}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=capped(5),
    params:
        settings=run_json_of,
    script:
        "../scripts/run_settings.py"


rule train:
    input:
        settings=RUN_JSON,
        subset=get_subset,
    output:
        summary=TRAIN_JSON,
    log:
        RESULTS / "logs" / "train" / f"{JOB}.log",
    benchmark:
        RESULTS / "benchmarks" / "train" / f"{JOB}.tsv"
    retries: TRAIN_RETRIES
    conda:
        ENV
    threads: train_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    script:
        "../scripts/train.py"
