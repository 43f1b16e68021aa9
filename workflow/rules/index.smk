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
        RESULTS / layout.index(),
    log:
        RESULTS / layout.log("index"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=capped(5),
    params:
        values=PLAN.index_values(),
    script:
        "../scripts/index.py"


rule table_html:
    input:
        RESULTS / layout.table("{figure}"),
    output:
        report(
            RESULTS / layout.report_table("{figure}"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{figure}"},
        ),
    log:
        RESULTS / layout.log("table_html", "{figure}"),
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
            RESULTS / layout.report_emm("{experiment}", "{value}"),
            caption="../report/emm_grids.rst",
            category="EMM runs",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "value": "{value}"},
        ),
    log:
        RESULTS / layout.log("emm_grids", "{experiment}", "{value}"),
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
