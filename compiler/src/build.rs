//! `vocc build`: from a checked model and its plan to the output tree — secrets,
//! rendering, the content-addressed file tree, the plan, the model dump and the
//! manifest — and, unless only configuration is asked for, the images.

use crate::model::Model;
use crate::output::{self, ExtraFile};
use crate::render::{self, Templates};
use crate::secrets::Secrets;
use serde::Serialize;
use std::path::PathBuf;
use vocc_runtime::Plan;

/// What the caller chose.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out: PathBuf,
    /// A directory whose templates replace the embedded ones of the same name.
    pub templates: Option<PathBuf>,
    /// Where per-cluster secrets are kept (made on first use, reused after).
    pub secrets: PathBuf,
    /// Render configuration and the plan only; build no images.
    pub config_only: bool,
    // --- images (crate::image) ---
    /// The content-addressed image store (default: [`crate::image::default_dir`]).
    pub store: Option<PathBuf>,
    /// Report image build progress as one JSON event per line on stderr (else
    /// spinners when stderr is a terminal).
    pub json_events: bool,
}

/// What a build produced (printed as JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub ok: bool,
    pub out: String,
    pub clusters: usize,
    pub nodes: usize,
    /// Files in the tree: node files, the plan and the model.
    pub files: usize,
    /// Distinct contents of the node files (those that several files share are
    /// stored once, under `objects/`, and hard-linked).
    pub objects: usize,
    /// The images, unless only configuration was built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageSummary>,
}

/// The image part of a build summary.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub store: String,
    /// Artifacts placed in the tree (layers, kernels, overlays, swap, config drives).
    pub artifacts: usize,
    /// Of those, how many this build made; the rest were cache hits.
    pub built: usize,
    pub hits: usize,
}

/// Why a build failed after the input checked out: a template, a secret or the disk.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Templates(#[from] render::TemplateError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Images(#[from] crate::image::ImageError),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BuildError {
    /// The failure as a diagnostic at the element of the appliance that caused it,
    /// when the input caused it (see [`crate::image::ImageError::input_problem`]).
    pub fn diagnostic(&self, model: &Model) -> Option<vocc_dsl::Diagnostic> {
        let BuildError::Images(e) = self else {
            return None;
        };
        let p = e.input_problem()?;
        let origin = model.clusters.iter().find_map(|c| {
            let layers = c.layers.iter().map(|l| &l.origin);
            let roles = c
                .roles
                .iter()
                .flat_map(|r| std::iter::once(&r.origin).chain(r.disks.iter().map(|d| &d.origin)));
            let nodes = c.nodes.iter().map(|n| &n.origin);
            layers
                .chain(roles)
                .chain(nodes)
                .find(|o| o.location == p.location)
        })?;
        Some(
            vocc_dsl::Diagnostic::error(origin.span, p.message)
                .with_label("the image build failed here")
                .with_hint(p.hint),
        )
    }
}

/// Builds everything for `model` placed by `plan` into `options.out`.
pub fn build(
    model: &Model,
    plan: Plan,
    options: &BuildOptions,
) -> Result<BuildSummary, BuildError> {
    let templates = Templates::load(options.templates.as_deref())?;
    let secrets = Secrets::load_or_create(&options.secrets, model)?;
    // The model's dump does not wait for the files.
    let (rendered, model_json) = rayon::join(
        || render::render(model, &plan, &templates, &secrets),
        || {
            let mut json = serde_json::to_vec_pretty(model).unwrap_or_default();
            json.push(b'\n');
            json
        },
    );
    let rendered = rendered?;
    // --- images: layers, overlays and config drives into the store; the plan gets
    // the layers' hashes and kernels before it is written ---
    let mut plan = plan;
    let images = if options.config_only {
        None
    } else {
        let image_options = crate::image::ImageOptions {
            store: options
                .store
                .clone()
                .unwrap_or_else(crate::image::default_dir),
            out: options.out.clone(),
            progress: if options.json_events {
                crate::image::Progress::json_stderr()
            } else {
                crate::image::Progress::terminal()
            },
        };
        Some((
            crate::image::build(model, &mut plan, &rendered, &image_options)?,
            image_options.store,
        ))
    };
    let extra = [ExtraFile {
        path: "model.json".into(),
        bytes: model_json,
        kind: "model".into(),
        cluster: None,
        source: model.clusters.first().map_or_else(
            || model.site.origin.location.clone(),
            |c| c.origin.location.clone(),
        ),
    }];
    let write_error = |source| BuildError::Write {
        path: options.out.clone(),
        source,
    };
    // The tree is written beside the current one, the images placed in it, and then
    // it replaces the current one at once.
    let staged = output::stage_tree(&options.out, &rendered, &plan, &extra).map_err(write_error)?;
    // --- images: placed in the tree, listed in the manifest ---
    let images = match images {
        Some((images, store)) => {
            let mut manifest = staged.written().manifest().map_err(write_error)?;
            crate::image::install(&images, staged.dir(), &options.out, &mut manifest)?;
            Some(ImageSummary {
                store: store.display().to_string(),
                artifacts: manifest.images.len(),
                built: images.built,
                hits: images.hits,
            })
        }
        None => None,
    };
    let written = staged.commit().map_err(write_error)?;
    Ok(BuildSummary {
        ok: true,
        out: options.out.display().to_string(),
        clusters: model.clusters.len(),
        nodes: plan.nodes.len(),
        files: written.files,
        objects: written.contents,
        images,
    })
}
