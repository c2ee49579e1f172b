//! # ember-ipc-derive
//!
//! Derive macros for Ember's typed messages. The code they generate names only paths of
//! `ember_core` (re-exported by `ember_linux` as `ember_linux::core`), never `postcard` or
//! this crate, so a user's crate depends on Ember and serde alone.
//!
//! - `#[derive(MaxSize)]`: the largest postcard encoding of a type, as
//!   `ember_core::message::MaxSize::POSTCARD_MAX_SIZE` (postcard's trait), so
//!   `[0u8; max_frame_len::<T>()]` sizes a buffer at compile time. The same rules as
//!   postcard's own derive: a struct is the sum of its fields, an enum the largest variant
//!   plus its discriminant's varint; unions are refused.
//! - `#[derive(Message)]` with `#[ember(kind = N)]`: implements
//!   `ember_core::message::Message` with `KIND = N`.
//!
//! - `#[derive(DbusStruct)]`: a struct as a D-Bus struct `(...)`: implements
//!   `ember_core::dbus::{DbusType, Encode, Decode}`, the signature composed from the
//!   fields' at compile time, the fields written and read in order. Named or tuple fields,
//!   at least one (D-Bus has no empty struct); a lifetime parameter borrows from the
//!   message (`&'a str`, `ArrayView<'a, T>`). Enums and unions are refused.
//!
//! All take `#[ember(crate = "path")]` for where `ember_core` is found (default
//! `::ember_core`; with only `ember-ipc-linux` as a dependency, `ember_linux::core`).
//!
//! Used through `ember_core::message`:
//!
//! ```ignore
//! use ember_core::message::{Message, MaxSize};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, MaxSize, Message)]
//! #[ember(kind = 1)]
//! struct Reading { sensor: u16, millikelvin: u32 }
//! ```
//!
//! (Tested in `ember_core::message` and by the documentation snippets of the workspace,
//! compiled from a crate that depends on Ember as a user's does.)
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Fields, GenericParam, LitInt, LitStr, Path, parse_macro_input, parse_quote};

/// `#[derive(MaxSize)]`: implements `ember_core::message::MaxSize` (postcard's trait) with
/// the largest encoded size of the type. See the crate documentation.
#[proc_macro_derive(MaxSize, attributes(ember))]
pub fn derive_max_size(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_max_size(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// `#[derive(Message)]` with `#[ember(kind = N)]`: implements `ember_core::message::Message`
/// with `KIND = N` (a `u32`; kinds from `0xFFFF_0000` up are Ember's own). See the crate
/// documentation.
#[proc_macro_derive(Message, attributes(ember))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_message(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// `#[derive(DbusStruct)]`: implements `ember_core::dbus::{DbusType, Encode, Decode}` for a
/// struct, as the D-Bus struct of its fields. See the crate documentation.
#[proc_macro_derive(DbusStruct, attributes(ember))]
pub fn derive_dbus_struct(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_dbus_struct(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

fn expand_dbus_struct(input: DeriveInput) -> syn::Result<Tokens> {
    let opts = options(&input)?;
    if opts.kind.is_some() {
        return Err(syn::Error::new(Span::call_site(), "#[derive(DbusStruct)] takes no `kind`"));
    }
    let krate = &opts.krate;
    let dbus = quote!(#krate::dbus);
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        Data::Enum(e) => {
            return Err(syn::Error::new(e.enum_token.span(), "DbusStruct is for structs (D-Bus has no enums)"));
        }
        Data::Union(u) => {
            return Err(syn::Error::new(u.union_token.span(), "DbusStruct cannot be derived for a union"));
        }
    };
    if fields.is_empty() {
        return Err(syn::Error::new(Span::call_site(), "a D-Bus struct has at least one field; this struct has none"));
    }
    let name = &input.ident;
    let tys: Vec<_> = fields.iter().map(|f| &f.ty).collect();
    let members: Vec<syn::Member> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| match &f.ident {
            Some(id) => syn::Member::Named(id.clone()),
            None => syn::Member::Unnamed(syn::Index::from(i)),
        })
        .collect();
    // A generic struct: each field's type must implement the trait (a bound on the type
    // parameters alone would not do for a field such as `ArrayView<'a, T>`). A struct
    // without type parameters needs no bounds (and gets none, so that a private field type
    // is not named in a public bound).
    let generic = input.generics.type_params().next().is_some();
    let bounded = |bound: Tokens| {
        let mut g = input.generics.clone();
        if generic {
            let w = g.make_where_clause();
            for ty in &tys {
                w.predicates.push(syn::parse2(quote! { #ty: #bound }).expect("a where predicate"));
            }
        }
        g
    };
    let g = bounded(quote!(#dbus::DbusType));
    let (impl_generics, ty_generics, where_clause) = g.split_for_impl();
    let sigs = tys.iter().map(|ty| quote_spanned! { ty.span() => &<#ty as #dbus::DbusType>::SIGNATURE });
    let type_impl = quote! {
        impl #impl_generics #dbus::DbusType for #name #ty_generics #where_clause {
            const SIGNATURE: #dbus::typed::SignatureBuf = #dbus::typed::SignatureBuf::structure(&[#(#sigs),*]);
        }
    };
    let g = bounded(quote!(#dbus::Encode));
    let (impl_generics, ty_generics, where_clause) = g.split_for_impl();
    let encode_impl = quote! {
        impl #impl_generics #dbus::Encode for #name #ty_generics #where_clause {
            fn encode(&self, w: &mut #dbus::Writer<'_>) -> ::core::result::Result<(), #dbus::DbusError> {
                w.structure(|w| {
                    #(#dbus::Encode::encode(&self.#members, w)?;)*
                    ::core::result::Result::Ok(())
                })
            }
        }
    };
    // Decode<'de>: 'de outlives every lifetime of the struct, so its borrowed fields can be
    // read from the message.
    let mut g = bounded(quote!(#dbus::Decode<'__de>));
    let lifetimes: Vec<syn::Lifetime> = g.lifetimes().map(|l| l.lifetime.clone()).collect();
    let mut de: syn::LifetimeParam = parse_quote!('__de);
    de.bounds.extend(lifetimes);
    g.params.insert(0, GenericParam::Lifetime(de));
    let (impl_generics, _, where_clause) = g.split_for_impl();
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let reads = members.iter().map(|m| quote! { #m: #dbus::Decode::decode(r)? });
    let decode_impl = quote! {
        impl #impl_generics #dbus::Decode<'__de> for #name #ty_generics #where_clause {
            fn decode(r: &mut #dbus::Reader<'__de>) -> ::core::result::Result<Self, #dbus::DbusError> {
                r.align(8)?;
                ::core::result::Result::Ok(#name { #(#reads),* })
            }
        }
    };
    Ok(quote! { #type_impl #encode_impl #decode_impl })
}

/// What `#[ember(...)]` attributes on the type said.
struct Options {
    krate: Path,
    kind: Option<LitInt>,
}

fn options(input: &DeriveInput) -> syn::Result<Options> {
    let mut krate: Path = parse_quote!(::ember_core);
    let mut kind = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("ember")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let s: LitStr = meta.value()?.parse()?;
                krate = s.parse()?;
                Ok(())
            } else if meta.path.is_ident("kind") {
                let n: LitInt = meta.value()?.parse()?;
                n.base10_parse::<u32>()?;
                kind = Some(n);
                Ok(())
            } else {
                Err(meta.error("expected `crate = \"path\"` or `kind = <u32>`"))
            }
        })?;
    }
    Ok(Options { krate, kind })
}

fn expand_message(input: DeriveInput) -> syn::Result<Tokens> {
    let opts = options(&input)?;
    let Some(kind) = opts.kind else {
        return Err(syn::Error::new(Span::call_site(), "#[derive(Message)] needs the frame kind: #[ember(kind = 1)]"));
    };
    let krate = &opts.krate;
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #krate::message::Message for #name #ty_generics #where_clause {
            const KIND: u32 = #kind;
        }
    })
}

fn expand_max_size(mut input: DeriveInput) -> syn::Result<Tokens> {
    let opts = options(&input)?;
    let krate = &opts.krate;
    let trait_path: Path = parse_quote!(#krate::message::MaxSize);
    for param in &mut input.generics.params {
        if let GenericParam::Type(t) = param {
            t.bounds.push(parse_quote!(#trait_path));
        }
    }
    let size = match &input.data {
        Data::Struct(s) => sum_fields(&s.fields, &trait_path),
        Data::Enum(e) => {
            // The variant index travels as a varint: bytes for the largest index.
            let largest_index = e.variants.len().saturating_sub(1) as u32;
            let discriminant = if e.variants.is_empty() { 0 } else { varint_len(largest_index) };
            let largest = e
                .variants
                .iter()
                .map(|v| sum_fields(&v.fields, &trait_path))
                .fold(quote!(0usize), |acc, x| quote! { { let a = #acc; let b = #x; if a > b { a } else { b } } });
            quote! { #discriminant + #largest }
        }
        Data::Union(u) => {
            return Err(syn::Error::new(u.union_token.span(), "MaxSize cannot be derived for a union"));
        }
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #trait_path for #name #ty_generics #where_clause {
            const POSTCARD_MAX_SIZE: usize = #size;
        }
    })
}

/// `0 + <F1 as MaxSize>::POSTCARD_MAX_SIZE + ...` over the fields.
fn sum_fields(fields: &Fields, trait_path: &Path) -> Tokens {
    let each = fields.iter().map(|f| {
        let ty = &f.ty;
        quote_spanned! { f.span() => <#ty as #trait_path>::POSTCARD_MAX_SIZE }
    });
    quote! { 0usize #(+ #each)* }
}

/// Bytes of `n` as a LEB128 varint.
fn varint_len(n: u32) -> usize {
    let bits = (32 - n.leading_zeros()).max(1) as usize;
    bits.div_ceil(7)
}
