# A map of results/<name>/ (index.csv, by-experiment/ links) and the report's items besides the figures:
# the tables rendered as HTML, and per EMM search the grids of the two runs that bracket its EMM.


localrules:
    index,
    table_html,
    emm_grids,


rule index:
    input:
        get_index_inputs,
    output:
        INDEX_CSV,
    log:
        RESULTS / "logs" / "index.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=capped(5),
    params:
        values=index_values(),
    script:
        "../scripts/index.py"


rule table_html:
    input:
        RESULTS / "tables" / "{figure}.csv",
    output:
        report(
            RESULTS / "report" / "tables" / "{figure}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{figure}"},
        ),
    log:
        RESULTS / "logs" / "table_html" / "{figure}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=capped(5),
    params:
        figure=get_figure_spec,
    script:
        "../scripts/table_html.py"


rule emm_grids:
    input:
        unpack(get_emm_grid_inputs),
    output:
        report(
            RESULTS / "report" / "emm" / "{experiment}" / "{value}.png",
            caption="../report/emm_grids.rst",
            category="EMM runs",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "value": "{value}"},
        ),
    log:
        RESULTS / "logs" / "emm_grids" / "{experiment}" / "{value}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=capped(5),
    params:
        about=get_emm_grid_about,
    script:
        "../scripts/emm_grids.py"
